"""State stores: the interface in `base`, backends beside it."""

from monitor.store.base import NewTransition, Store

__all__ = ["NewTransition", "Store"]
