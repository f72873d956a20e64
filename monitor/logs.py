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

from monitor.secrets import PROCESS_SECRETS, SecretValues

#: A value at a secret key: `apikey=...`, `"secret": "..."`, `admin_token: ...`.
_KEYED_SECRET_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])"
    r"(apikey|api_key|api_token|client_secret|access_token|admin_token|token|secret|password)"
    r"(=|%3D|\"?\s*:\s*\"?)([^&\s'\",}]+)"
)
#: Values masked by their form wherever they are: bearer tokens, Standard Webhooks secrets,
#: and the password of a URL (a DSN).
_FORM_SECRET_RE = re.compile(
    r"(?P<bearer>\bBearer\s+)[^\s'\",}]+"
    r"|whsec_[A-Za-z0-9+/=]+"
    r"|(?P<userinfo>://[^:/@\s'\"]*:)[^@/\s'\"]+(?=@)"
)
MASK = "**********"


def _form(m: re.Match[str]) -> str:
    return (m["bearer"] or m["userinfo"] or "") + MASK


def redact(text: str, secrets: Iterable[str] = (), *, values: SecretValues | None = None) -> str:
    """Mask values at secret keys, secrets recognised by their form, and known secret values.

    Known values are those registered in `values` (by default the process's: what the running
    config holds) plus `secrets`, the values the caller itself holds.
    """
    text = _KEYED_SECRET_RE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _FORM_SECRET_RE.sub(_form, text)
    for value in sorted(secrets, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, MASK)
    pattern = (values or PROCESS_SECRETS).pattern()
    return pattern.sub(MASK, text) if pattern is not None else text


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
