"""Secrets as a type, and the bounded set of secret values the log redactor looks for.

A `Secret`'s value is reachable only through `reveal()`, never through str or repr. Creating one
registers nothing: a body the API rejects, or a config that fails validation, leaves no trace.
The objects that exist (the running config) register their secrets in a `SecretValues` under an
owner name and drop them when they go.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import core_schema

#: The longest secret accepted (keys, tokens and DSNs are far shorter).
MAX_SECRET_CHARS = 8_192
#: Values shorter than this are masked only where a secret key names them, never by value: a
#: short value ("info", "level") turns up in every line as an ordinary word.
MIN_SCANNED_LENGTH = 8
#: At most this many values are searched for in each log line, each at most this long.
MAX_SCANNED_VALUES = 256
MAX_SCANNED_LENGTH = 1024


class Secret:
    """A secret string (API key, client secret, token, webhook secret).

    `str()`, `repr()` and formatting show `'**********'`; code that must send the value calls
    `reveal()`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __format__(self, spec: str) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        def convert(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if isinstance(value, str | int) and not isinstance(value, bool):
                text = str(value)
                if not text.strip():
                    raise ValueError("must not be empty")
                if len(text) > MAX_SECRET_CHARS:
                    raise ValueError(f"too long: at most {MAX_SECRET_CHARS:,} characters")
                return Secret(text)
            raise ValueError("must be a string")

        return core_schema.no_info_plain_validator_function(
            convert,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: str(s)),
        )


def scannable(value: str) -> bool:
    """Whether the redactor searches log lines for this value.

    Short values and plain words (letters only) are left to the key-based masking: searching
    for them would mask ordinary words everywhere. Very long ones never appear whole in a line.
    """
    return MIN_SCANNED_LENGTH <= len(value) <= MAX_SCANNED_LENGTH and not value.isalpha()


class SecretValues:
    """Secret values by owner, bounded, with one compiled pattern that finds any of them."""

    def __init__(self, limit: int = MAX_SCANNED_VALUES) -> None:
        self._limit = limit
        self._owners: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()  # logging may run on other threads (the store's)
        self._pattern: re.Pattern[str] | None = None

    def set(self, owner: str, secrets: Iterable[Secret]) -> None:
        """The secrets `owner` holds now (replacing what it held)."""
        values = frozenset(s.reveal() for s in secrets if scannable(s.reveal()))
        with self._lock:
            if values:
                self._owners[owner] = values
            else:
                self._owners.pop(owner, None)
            self._pattern = self._compile()

    def drop(self, owner: str) -> None:
        """`owner` is gone: forget its secrets."""
        with self._lock:
            if self._owners.pop(owner, None) is not None:
                self._pattern = self._compile()

    def values(self) -> frozenset[str]:
        """Every value searched for (at most `limit`)."""
        with self._lock:
            return self._bounded()

    def pattern(self) -> re.Pattern[str] | None:
        """One pattern matching any of the values, longest first; None when there are none."""
        return self._pattern

    def _bounded(self) -> frozenset[str]:
        out: set[str] = set()
        for values in self._owners.values():
            for v in sorted(values):
                if len(out) >= self._limit:
                    return frozenset(out)
                out.add(v)
        return frozenset(out)

    def _compile(self) -> re.Pattern[str] | None:
        values = self._bounded()
        if not values:
            return None
        return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


#: The process's values: logging is process-wide, so its redactor reads one set.
PROCESS_SECRETS = SecretValues()


def known_secrets() -> frozenset[str]:
    """The secret values the log redactor searches for."""
    return PROCESS_SECRETS.values()


#: Fields that hold many entries and never a secret (events, listings): not walked.
_NO_SECRETS = frozenset({"events", "listings"})


def secrets_in(node: Any) -> list[Secret]:
    """Every `Secret` in a config model (its sections, lists and mappings)."""
    if isinstance(node, Secret):
        return [node]
    if isinstance(node, BaseModel):
        return [
            s
            for name in type(node).model_fields
            if name not in _NO_SECRETS
            for s in secrets_in(getattr(node, name))
        ]
    if isinstance(node, Mapping):
        return [s for v in node.values() for s in secrets_in(v)]
    if isinstance(node, list | tuple):
        return [s for v in node for s in secrets_in(v)]
    return []
