"""Faults the simulator can inject, and the plan that decides which ones fire on a request.

A fault spec is a JSON object such as `{"kind": "error", "status": 503, "count": 3}`. Fields
common to every kind: `count` (fire this many times, then disappear; absent or null = until
cleared), `probability` (0..1, default 1, drawn from the plan's seeded RNG) and `api` (which
simulated API it applies to, default "inventory"). `api` names an API or, after a dot, one of its
endpoints: "partner" hits every Partner API request, "partner.oauth" only token requests and
"partner.event" only event details.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Final

LATENCY: Final = "latency"
ERROR: Final = "error"
RATE_LIMIT: Final = "rate_limit"
TIMEOUT: Final = "timeout"
MALFORMED: Final = "malformed"
TRUNCATED: Final = "truncated"
HTML: Final = "html"
NOT_ARRAY: Final = "not_array"
MISSING_IDS: Final = "missing_ids"
EXTRA_IDS: Final = "extra_ids"
UNKNOWN_STATUS: Final = "unknown_status"
LOWERCASE_KEY: Final = "lowercase_key"
BAD_IDS: Final = "bad_ids"

TERMINAL_KINDS: Final = frozenset(
    {ERROR, RATE_LIMIT, TIMEOUT, MALFORMED, TRUNCATED, HTML, NOT_ARRAY, BAD_IDS}
)
"""Kinds that decide the whole answer; the first one that fires wins."""
ALTERING_KINDS: Final = frozenset({MISSING_IDS, EXTRA_IDS, UNKNOWN_STATUS, LOWERCASE_KEY})
"""Kinds that change a normal answer; all that fire combine, in plan order."""

_COMMON: Final = ("kind", "count", "probability", "api")
# Fields each kind takes besides the common ones.
_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    LATENCY: ("seconds",),
    ERROR: ("status", "retry_after"),
    RATE_LIMIT: ("retry_after", "variant"),
    TIMEOUT: ("seconds",),
    MALFORMED: (),
    TRUNCATED: ("mode",),
    HTML: ("status",),
    NOT_ARRAY: (),
    MISSING_IDS: ("fraction", "ids"),
    EXTRA_IDS: ("extra",),
    UNKNOWN_STATUS: ("value", "field", "fraction", "ids"),
    LOWERCASE_KEY: (),
    BAD_IDS: ("ids",),
}
KINDS: Final = frozenset(_FIELDS)

RATE_LIMIT_VARIANTS: Final = ("spike_arrest", "quota")
TRUNCATED_MODES: Final = ("body", "connection")
STATUS_FIELDS: Final = ("status", "resaleStatus")


def applies_to(fault_api: str, request_api: str) -> bool:
    """Whether a fault of `fault_api` hits a request of `request_api` ("partner" hits
    "partner.event"; "partner.event" does not hit "partner.oauth")."""
    return request_api == fault_api or request_api.startswith(fault_api + ".")


def _number(spec: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"fault field {name!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"fault field {name!r} must be in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(spec: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"fault field {name!r} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"fault field {name!r} must be in [{low}, {high}], got {value!r}")
    return value


def _choice(spec: Mapping[str, Any], name: str, options: Sequence[str]) -> str:
    value = spec.get(name, options[0])
    if value not in options:
        raise ValueError(f"fault field {name!r} must be one of {list(options)}, got {value!r}")
    return str(value)


def _text(spec: Mapping[str, Any], name: str, default: str) -> str:
    value = spec.get(name, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"fault field {name!r} must be a non-empty string, got {value!r}")
    return value


def _ids(spec: Mapping[str, Any], required: bool) -> frozenset[str]:
    value = spec.get("ids")
    if value is None:
        if required:
            raise ValueError("fault field 'ids' is required: a non-empty list of event IDs")
        return frozenset()
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if not isinstance(value, list | tuple | set | frozenset) or not value:
        raise ValueError(f"fault field 'ids' must be a non-empty list of strings, got {value!r}")
    if not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"fault field 'ids' must hold non-empty strings, got {value!r}")
    return frozenset(value)


@dataclass(slots=True, eq=False)
class Fault:
    """One fault, validated and with its kind's defaults filled in.

    Build it with `Fault.from_spec(dict)`. Only the fields of its kind are meaningful:
    `seconds` (latency: default 1; timeout: default 30), `status` (error: default 503;
    html: default 502), `retry_after` (error: optional; rate_limit: default 1), `variant`
    (rate_limit: "spike_arrest" or "quota"), `mode` (truncated: "body" cuts the JSON and sends
    a matching Content-Length, "connection" announces the full length and hangs up halfway),
    `fraction` (missing_ids: default 0.5; unknown_status: default 1), `ids` (bad_ids: required;
    missing_ids / unknown_status: the affected IDs, instead of `fraction`), `extra` (extra_ids:
    how many IDs to add, default 3), `value` and `field` (unknown_status: default
    "SOMETHING_NEW" in "status").
    """

    kind: str
    count: int | None = None
    probability: float = 1.0
    api: str = "inventory"
    seconds: float = 0.0
    status: int = 0
    retry_after: float | None = None
    variant: str = RATE_LIMIT_VARIANTS[0]
    mode: str = TRUNCATED_MODES[0]
    fraction: float = 0.0
    ids: frozenset[str] = frozenset()
    extra: int = 0
    value: str = ""
    field: str = STATUS_FIELDS[0]
    remaining: int | None = dataclass_field(default=None, init=False)
    """Firings left; None = unlimited. The plan drops the fault when it reaches 0."""

    def __post_init__(self) -> None:
        self.remaining = self.count

    @property
    def terminal(self) -> bool:
        """Whether this kind decides the whole answer."""
        return self.kind in TERMINAL_KINDS

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | Fault) -> Fault:
        """Validate a spec (e.g. parsed JSON) and build the fault; ValueError says what is wrong."""
        if isinstance(spec, Fault):
            return cls.from_spec(spec.to_spec())
        if not isinstance(spec, Mapping):
            raise ValueError(f"a fault must be a JSON object, got {spec!r}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"fault 'kind' must be one of {sorted(KINDS)}, got {kind!r}")
        allowed = set(_COMMON) | set(_FIELDS[kind])
        unexpected = sorted(str(key) for key in spec if key not in allowed)
        if unexpected:
            raise ValueError(
                f"unknown field(s) {unexpected} for fault kind {kind!r}; it takes {sorted(allowed)}"
            )
        count = spec.get("count")
        if count is not None:
            count = _integer(spec, "count", 1, 1, 2**31)
        kwargs: dict[str, Any] = {
            "kind": kind,
            "count": count,
            "probability": _number(spec, "probability", 1.0, 0.0, 1.0),
            "api": _text(spec, "api", "inventory"),
        }
        if kind in (LATENCY, TIMEOUT):
            kwargs["seconds"] = _number(spec, "seconds", 1.0 if kind == LATENCY else 30.0, 0, 86400)
        if kind == ERROR:
            kwargs["status"] = _integer(spec, "status", 503, 400, 599)
        if kind == HTML:
            kwargs["status"] = _integer(spec, "status", 502, 200, 599)
        if kind in (ERROR, RATE_LIMIT) and (kind == RATE_LIMIT or "retry_after" in spec):
            kwargs["retry_after"] = _number(spec, "retry_after", 1.0, 0, 86400)
        if kind == RATE_LIMIT:
            kwargs["variant"] = _choice(spec, "variant", RATE_LIMIT_VARIANTS)
        if kind == TRUNCATED:
            kwargs["mode"] = _choice(spec, "mode", TRUNCATED_MODES)
        if kind in (MISSING_IDS, UNKNOWN_STATUS, BAD_IDS):
            kwargs["ids"] = _ids(spec, required=kind == BAD_IDS)
        if kind in (MISSING_IDS, UNKNOWN_STATUS):
            default = 0.5 if kind == MISSING_IDS else 1.0
            kwargs["fraction"] = _number(spec, "fraction", default, 0.0, 1.0)
        if kind == EXTRA_IDS:
            kwargs["extra"] = _integer(spec, "extra", 3, 1, 1000)
        if kind == UNKNOWN_STATUS:
            kwargs["value"] = _text(spec, "value", "SOMETHING_NEW")
            kwargs["field"] = _choice(spec, "field", STATUS_FIELDS)
        return cls(**kwargs)

    def to_spec(self) -> dict[str, Any]:
        """The spec this fault was built from, with defaults filled in (JSON-ready)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "probability": self.probability,
            "api": self.api,
        }
        for name in _FIELDS[self.kind]:
            value = getattr(self, name)
            if name == "ids":
                value = sorted(value) if value else None
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> dict[str, Any]:
        """The spec plus how many firings are left, as the control endpoint shows it."""
        out = self.to_spec()
        out["remaining"] = self.remaining
        return out


def parse_faults(spec: Any) -> list[Fault]:
    """One fault spec or a list of them (parsed JSON) → faults; ValueError on any bad one."""
    specs = spec if isinstance(spec, list) else [spec]
    faults: list[Fault] = []
    for i, item in enumerate(specs):
        try:
            faults.append(Fault.from_spec(item))
        except ValueError as exc:
            where = f"fault #{i + 1}: " if len(specs) > 1 else ""
            raise ValueError(f"{where}{exc}") from None
    return faults


@dataclass(slots=True)
class Decision:
    """What the faults make of one request."""

    delay: float = 0.0
    """Seconds of latency to add before answering."""
    terminal: Fault | None = None
    """The fault that decides the answer, if any."""
    altering: list[Fault] = dataclass_field(default_factory=list)
    """Faults that change a normal answer, in plan order (empty when `terminal` is set)."""
    bad_id: str | None = None
    """For a `bad_ids` terminal fault: the first requested ID it matched."""


class FaultPlan:
    """The active faults, in order, switchable at run time.

    `decide()` walks them in order for each request: latency faults add up, altering faults
    combine, the first terminal fault that fires decides the answer and later ones are not
    consulted. A fault only spends one of its `count` when it took effect: altering faults
    that fired alongside a terminal one are not charged.
    """

    def __init__(self, faults: Iterable[Fault | Mapping[str, Any]] = (), *, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault | Mapping[str, Any]) -> Fault:
        """Append a fault (or a spec, validated); returns the fault as it is held."""
        held = fault if isinstance(fault, Fault) else Fault.from_spec(fault)
        self._faults.append(held)
        return held

    def remove(self, fault: Fault) -> None:
        """Drop one fault, if it is still held."""
        if fault in self._faults:
            self._faults.remove(fault)

    def clear(self) -> None:
        """Drop every fault."""
        self._faults.clear()

    def active(self, api: str | None = None) -> list[Fault]:
        """The faults still held, in order (only those that hit requests of `api` if given)."""
        return [f for f in self._faults if api is None or applies_to(f.api, api)]

    def __len__(self) -> int:
        return len(self._faults)

    def __bool__(self) -> bool:
        return bool(self._faults)

    def decide(self, api: str, ids: Sequence[str]) -> Decision:
        """Which faults fire on one request of `api` (e.g. "inventory", "partner.event") for
        `ids`; spends their counts."""
        if not self._faults:
            return Decision()
        decision = Decision()
        spent: list[Fault] = []
        wanted: set[str] | None = None
        for fault in self._faults:
            if fault.api != api and not applies_to(fault.api, api):
                continue
            kind = fault.kind
            if decision.terminal is not None and kind != LATENCY:
                continue
            bad_id = None
            if kind == BAD_IDS:
                if wanted is None:
                    wanted = set(ids)
                if wanted.isdisjoint(fault.ids):
                    continue
                bad_id = next(i for i in ids if i in fault.ids)
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            if kind == LATENCY:
                decision.delay += fault.seconds
                spent.append(fault)
            elif fault.terminal:
                decision.terminal = fault
                decision.bad_id = bad_id
                spent.append(fault)
            else:
                decision.altering.append(fault)
        if decision.terminal is None:
            spent.extend(decision.altering)
        else:
            decision.altering = []
        for fault in spent:
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.remove(fault)
        return decision
