"""`availability-monitor demo`: the daemon on its embedded default, no key and no network."""

from monitor.demo.runner import run_demo

__all__ = ["run_demo"]
