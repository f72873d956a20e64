"""Structured logs (structlog): JSON lines by default, a console format on a terminal.

Everything that reaches the output, our own lines and those of libraries alike, goes through one
renderer that masks secrets last, after exceptions have been formatted into text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from monitor.secrets import known_secrets

_QUERY_SECRET_RE = re.compile(
    r"(?i)\b(apikey|api_key|client_secret|access_token|admin_token|token|secret)"
    r"(=|%3D|\"?\s*:\s*\"?)([^&\s'\",}]+)"
)
MASK = "**********"


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """Mask `apikey=...`-style parameters and every known secret value in `text`."""
    text = _QUERY_SECRET_RE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    for value in sorted(secrets if secrets is not None else known_secrets(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingRenderer:
    """Wraps a renderer and masks secrets in the finished line."""

    def __init__(self, inner: Callable[[WrappedLogger, str, EventDict], str | bytes]) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        out = self._inner(logger, name, event_dict)
        text = out.decode() if isinstance(out, bytes) else out
        return redact(text)


def _json_dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog and the standard library's logging to one redacting output.

    `fmt` is "json", "console", or "auto" (console on a terminal, JSON otherwise).
    """
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Callable[[WrappedLogger, str, EventDict], Any]
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            RedactingRenderer(renderer),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # The scheduler reports every skipped overlapping run at WARNING; we count those in metrics.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    """A structlog logger for a module."""
    return structlog.get_logger(name)


def is_enabled(logger: Any, level: int) -> bool:
    """Whether `logger` writes lines at `level` (a standard-library level such as
    `logging.INFO`), to skip building lines nobody reads. Loggers that cannot tell (structlog
    before `configure_logging`) are taken to write everything."""
    check = getattr(logger, "isEnabledFor", None)
    return True if check is None else bool(check(level))
