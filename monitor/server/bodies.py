"""Reading what a request carries: a JSON body, query integers, times; strictly and bounded.

A body is read whole (the server caps it at 1 MB), parsed by orjson (no NaN or Infinity, no
lone surrogates, nesting at most 1024 deep), checked against the OpenAPI document's schema
for it, and only then handed to a model. Anything wrong is a 400 naming the key path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from monitor.config.loader import validation_issues
from monitor.server.app import BODY_SECONDS, json_error
from monitor.server.schema import MAX_PROBLEMS, Problem, RequestSchemas

M = TypeVar("M", bound=BaseModel)

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))"
)
_EPOCH = datetime(1970, 1, 1)


def bad_request(problems: Sequence[Problem]) -> web.Response:
    """A 400 naming the first problem's key path, listing every problem (bounded)."""
    first = problems[0]
    return json_error(
        400,
        str(first),
        field=first.field,
        errors=[{"field": p.field, "message": p.message} for p in problems[:MAX_PROBLEMS]],
    )


def parse_json(raw: bytes, schemas: RequestSchemas, schema: str) -> Any | web.Response:
    """The body as JSON that the document's `schema` allows, or a 400 saying what is wrong."""
    if not raw.strip():
        return json_error(400, "a JSON body is needed", field="")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return json_error(400, f"the body is not valid JSON: {exc}", field="")
    problems = schemas.problems(schema, data)
    if problems:
        return bad_request(problems)
    return _integral(data)


async def read_json(request: web.Request, schemas: RequestSchemas, schema: str) -> Any:
    """`parse_json` of the request's body; 408 when it does not arrive in time (the head has
    its own deadline, in the listener)."""
    seconds = request.app.get(BODY_SECONDS, 30.0)
    try:
        async with asyncio.timeout(seconds):
            raw = await request.read()
    except TimeoutError:
        resp = json_error(408, f"the body did not arrive within {seconds:g} s")
        resp.force_close()  # the rest of the body may still come: the connection is done
        return resp
    return parse_json(raw, schemas, schema)


def as_model(model: type[M], data: Any) -> M | web.Response:
    """`data` (already checked against the document) as `model`, or a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = validation_issues(exc, data, model)
        return bad_request([Problem(i.path, i.message) for i in issues])


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int | None:
    """A query parameter as an integer in [low, high] (plain ASCII digits), or None."""
    text = request.query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def rfc3339_timestamp(text: str) -> float | None:
    """Unix seconds of an RFC 3339 date-time (a leap second counts as :59.999999), or None."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micro = int((m[7] or "0")[:6].ljust(6, "0"))
    if second == 60:
        second, micro = 59, 999_999
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    if m[8] is not None:
        if int(m[9]) > 23 or int(m[10]) > 59:
            return None
        offset = (int(m[9]) * 3600 + int(m[10]) * 60) * (1 if m[8] == "+" else -1)
    try:
        local = datetime(max(year, 1), month, day, hour, minute, second, micro)
    except ValueError:
        return None
    return (local - _EPOCH).total_seconds() - offset


def _integral(data: Any) -> Any:
    """Whole numbers sent as floats (`2.0`) become ints: JSON Schema counts them as integers."""
    if isinstance(data, float) and data.is_integer():
        return int(data)
    if isinstance(data, list):
        return [_integral(v) for v in data]
    if isinstance(data, dict):
        return {k: _integral(v) for k, v in data.items()}
    return data
