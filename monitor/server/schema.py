"""Request bodies checked against the OpenAPI document's own schemas, before anything else.

The document is the truth: a body it does not allow is a 400 naming the key path, whatever the
models behind it would make of it. Messages are built from the kind of problem and never quote
the value sent (it may be a secret, or a megabyte long).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema_rs
import yaml

from monitor.config.errors import join_path

#: At most this many problems are reported for one body.
MAX_PROBLEMS = 20
#: An enum longer than this is not spelt out in a message.
MAX_LISTED = 10
#: Problems whose generic message says little: the schema's own `x-error` says it better.
_CUSTOMISED = frozenset(
    {"Not", "OneOfNotValid", "AnyOf", "Pattern", "Enum", "MinProperties", "MaxProperties"}
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a body: where (a key path such as `filter.to[0]`) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def load_document() -> dict[str, Any]:
    """The OpenAPI document shipped with the package."""
    text = resources.files("monitor.server").joinpath("openapi.yaml").read_text("utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


class RequestSchemas:
    """Validators for the document's component schemas, built once each."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._doc = document
        self._validators: dict[str, Any] = {}

    def problems(self, name: str, data: Any) -> list[Problem]:
        """What is wrong with `data` as a `#/components/schemas/{name}`; empty when nothing."""
        validator = self._validator(name)
        out: list[Problem] = []
        for error in validator.iter_errors(data):
            for problem in self._explain(error):
                if problem not in out:
                    out.append(problem)
                if len(out) >= MAX_PROBLEMS:
                    return out
        return out

    def _validator(self, name: str) -> Any:
        found = self._validators.get(name)
        if found is None:
            schema = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": f"#/components/schemas/{name}",
                "components": self._doc["components"],
            }
            found = jsonschema_rs.validator_for(schema, validate_formats=True)
            self._validators[name] = found
        return found

    # -- messages --------------------------------------------------------------------------

    def _explain(self, error: Any) -> Iterator[Problem]:
        kind = error.kind
        path = list(error.instance_path)
        name = type(kind).__name__
        if name in ("OneOfNotValid", "AnyOf"):
            branch = _the_branch_meant(kind.context)
            if branch is not None:
                for sub in branch:
                    yield from self._explain(sub)
                return
        if name == "Required":
            yield Problem(join_path([*path, kind.property]), "required key is missing")
            return
        if name == "AdditionalProperties":
            known = sorted(self._schema_at(error.schema_path[:-1]).get("properties", {}))
            hint = f" (expected one of: {', '.join(known)})" if known else ""
            for key in kind.unexpected:
                yield Problem(join_path([*path, key]), f"unknown key{hint}")
            return
        custom = self._custom(error.schema_path) if name in _CUSTOMISED else None
        yield Problem(join_path(path), custom or _message(name, kind))

    def _custom(self, schema_path: Sequence[Any]) -> str | None:
        """The `x-error` of the schema whose keyword failed, looking through allOf/anyOf/oneOf
        to the schema that holds them."""
        parts = list(schema_path[:-1])
        while True:
            found = self._schema_at(parts).get("x-error")
            if found is not None or len(parts) < 2:
                return found if isinstance(found, str) else None
            if parts[-2] not in ("allOf", "anyOf", "oneOf") or not isinstance(parts[-1], int):
                return None
            parts = parts[:-2]

    def _schema_at(self, schema_path: Sequence[Any]) -> Mapping[str, Any]:
        node: Any = self._doc
        for part in schema_path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return {}
        return node if isinstance(node, Mapping) else {}


def _the_branch_meant(context: Sequence[Sequence[Any]]) -> Sequence[Any] | None:
    """Of the alternatives of a oneOf, the one the sender meant: the only one whose type fits."""
    fitting = [
        branch
        for branch in context
        if not any(type(e.kind).__name__ == "Type" and not e.instance_path for e in branch)
        and not all(type(e.kind).__name__ == "Type" for e in branch)
    ]
    return fitting[0] if len(fitting) == 1 else None


def _message(name: str, kind: Any) -> str:
    simple: dict[str, Callable[[], str]] = {
        "Type": lambda: f"must be {' or '.join(_types(kind.types))}",
        "Pattern": lambda: f"must match {kind.pattern}",
        "MinLength": lambda: f"must be at least {kind.limit} characters",
        "MaxLength": lambda: f"must be at most {kind.limit} characters",
        "Minimum": lambda: f"must be >= {kind.limit}",
        "Maximum": lambda: f"must be <= {kind.limit}",
        "ExclusiveMinimum": lambda: f"must be > {kind.limit}",
        "ExclusiveMaximum": lambda: f"must be < {kind.limit}",
        "MinItems": lambda: f"must have at least {kind.limit} entries",
        "MaxItems": lambda: f"must have at most {kind.limit} entries",
        "MinProperties": lambda: f"must have at least {kind.limit} keys",
        "MaxProperties": lambda: f"must have at most {kind.limit} keys",
        "Enum": lambda: _enum(kind.options),
        "Constant": lambda: f"must be {_json(kind.expected_value)}",
        "Format": lambda: f"must be a valid {kind.format}",
        "UniqueItems": lambda: "entries must be unique",
    }
    make = simple.get(name)
    if make is None:
        return "is not allowed here"
    try:
        return make()
    except AttributeError:  # a kind without the attribute in this version: still say what
        return f"fails the {name} rule"


def _types(types: Any) -> list[str]:
    names = {"number": "a number", "integer": "an integer", "string": "a string"}
    names |= {"boolean": "true or false", "array": "a list", "object": "an object"}
    names |= {"null": "null"}
    return [names.get(str(t), str(t)) for t in types]


def _enum(options: Any) -> str:
    values = list(options)
    if len(values) > MAX_LISTED:
        return "is not one of the documented values"
    return "must be one of: " + ", ".join(_json(v) for v in values)


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)
