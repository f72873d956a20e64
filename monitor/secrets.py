"""Secrets as a type: the value is reachable only through `reveal()`, never through str or repr."""

from __future__ import annotations

from typing import Any

from pydantic_core import core_schema

#: The longest secret accepted (keys, tokens and DSNs are far shorter).
MAX_SECRET_CHARS = 8_192


class Secret:
    """A secret string (API key, client secret, token, webhook secret).

    `str()`, `repr()` and formatting show `'**********'`; code that must send the value calls
    `reveal()`. Every secret created is remembered by value in `known_secrets()` so the log
    redactor can mask it wherever it turns up.
    """

    __slots__ = ("_value",)

    _registry: set[str] = set()

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 4:
            Secret._registry.add(value)

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
            if isinstance(value, str | int):
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


def known_secrets() -> frozenset[str]:
    """Every secret value seen in this process, for redaction."""
    return frozenset(Secret._registry)
