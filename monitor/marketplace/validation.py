"""Validation of marketplace inventory bodies before they are sent (seeds 002 and 003), pure.

`validate_bulk_update` checks the `inventory` attributes of a Bulk Update
(`PATCH /v9/inventory`), `validate_create` the `inventory` object of a Create
(`POST /v9/inventory`), and `normalize_update` turns valid bulk-update attributes into the exact
JSON attributes to send. Problems are `(key path, message)` pairs; key paths are relative to the
mapping given (`price`, `split_override[1]`, `ticket.seats[0].seat`) so a caller can prefix its
own (`actions[0].update.` + path).

Decisions where the seeds are silent, garbled or disagree:

- Enums match case-insensitively and are sent in the spelling seed 003 lists (`Eticket`,
  `Full`, `DEFAULT`, ...). Seed 003 lists `format: Eticket` while seed 002's example sends
  `"ETICKET"` and gets `"view_type": "FULL"` back for `"Full"`, so the marketplace evidently
  does not care about case; sending one spelling keeps retried bodies byte-identical.
- Decimals (`price`, `cost`, `discount`, `face_value`, `taxed_cost`; the seeds call some
  "Float") are strings such as `"150.00"` or JSON numbers, finite, not negative, with at most
  2 decimal places (money is refused rather than silently rounded), and are sent as strings
  with exactly 2 decimals, like the seeds' examples. Booleans are not numbers.
- Blank values (`""`, whitespace only, `null`, an empty array) are rejected everywhere, not
  only in a bulk update (seed 003 says so for the bulk update; nothing useful is blank).
- `in_hand_on` is a date `YYYY-MM-DD` (a `datetime.date`, as YAML gives for an unquoted
  date, is accepted and sent in that form).
- `locked` (boolean) is accepted in a bulk update although seed 003's table omits it: seed 002
  shows it on a listing, seed 003 says the bulk update takes the attributes of Inventory /
  Update except `remote_id`, `quantity` and `seats`, and locking listings is what a broker's
  rule wants to do. Every other attribute outside seed 003's table is rejected as unknown.
- Strings are strings: `section: 100` in YAML is an integer and is rejected ("must be a
  string"), so the body sent is the one the rule's author meant.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

Problem = tuple[str, str]
"""A problem: (key path relative to the validated mapping, message)."""

MAX_PRICE: Final = Decimal("1000000")
MAX_DISCOUNT: Final = Decimal("100")
_CENT: Final = Decimal("0.01")

FORMATS: Final = ("Eticket", "Flash_seats", "Guest_list", "Paperless", "Physical", "TM_mobile")
SPLIT_TYPES: Final = ("DEFAULT", "ANY", "NEVERLEAVEONE", "NONE", "CUSTOM")
TYPES: Final = ("EVENT", "PARKING")
VIEW_TYPES: Final = ("Full", "Obstructed", "Possibly Obstructed", "Partially Obstructed")

BULK_REFUSED: Final[Mapping[str, str]] = {
    "remote_id": "it must be unique across all inventory",
    "quantity": (
        "it adjusts the seats underneath a group, and the marketplace cannot tell which seats "
        "to remove or has too little information to add more"
    ),
    "seats": "seat numbers, barcodes and other seat items are unique",
}
"""Attributes a bulk update may not set, with seed 003's reason."""

_EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE: Final = re.compile(r"^\d{2}:\d{2}:\d{2}$")
_DECIMAL_RE: Final = re.compile(r"^-?\d+(\.\d+)?$")
_DIGITS_RE: Final = re.compile(r"^\d+$")


class InvalidAttributes(ValueError):
    """Attributes that fail validation; `problems` holds every (key path, message)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


# -- value checks: each returns (problems, the value as it is sent) ----------------------------


def _path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | tuple) and not value


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr gives the shortest text that round-trips: 150.1 -> "150.1", not 150.0999...
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and _DECIMAL_RE.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            return None
    return None


Check = Callable[[Any, str], tuple[list[Problem], Any]]


def _decimal(maximum: Decimal | None) -> Check:
    def check(value: Any, path: str) -> tuple[list[Problem], Any]:
        number = _to_decimal(value)
        if number is None:
            return [(path, 'must be a decimal such as "150.00"')], None
        if number < 0:
            return [(path, "must not be negative")], None
        if maximum is not None and number > maximum:
            return [(path, f"must be at most {maximum:,.2f}")], None
        if number != number.quantize(_CENT):
            return [(path, "must have at most 2 decimal places")], None
        return [], f"{number.quantize(_CENT):f}"

    return check


def _enum(values: tuple[str, ...]) -> Check:
    by_upper = {v.upper(): v for v in values}

    def check(value: Any, path: str) -> tuple[list[Problem], Any]:
        if isinstance(value, str) and value.upper() in by_upper:
            return [], by_upper[value.upper()]
        return [(path, f"must be one of {', '.join(values)} (got {value!r})")], None

    return check


def _boolean(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, bool):
        return [], value
    return [(path, f"must be true or false (got {value!r})")], None


def _string(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, str):
        return [], value
    return [(path, f"must be a string (got {type(value).__name__}; quote it)")], None


def _email(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, str) and _EMAIL_RE.match(value):
        return [], value
    return [(path, "is in invalid format: must be an email address")], None


def _date(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, dt.datetime):
        return [(path, "must be a date YYYY-MM-DD, not a date and time")], None
    if isinstance(value, dt.date):
        return [], value.isoformat()
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return [], dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    return [(path, f"must be a date YYYY-MM-DD (got {value!r})")], None


def _time(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, str) and _TIME_RE.match(value):
        try:
            return [], dt.time.fromisoformat(value).isoformat()
        except ValueError:
            pass
    return [(path, f"must be a time HH:MM:SS (got {value!r})")], None


def _positive_int(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return [], value
    return [(path, f"must be a positive integer (got {value!r})")], None


def _record_id(value: Any, path: str) -> tuple[list[Problem], Any]:
    # Seed 002 types these IDs "Integer" but its example sends them as strings of digits.
    if isinstance(value, str) and _DIGITS_RE.match(value) and int(value) > 0:
        return [], value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return [], value
    return [(path, f"must be a positive integer ID (got {value!r})")], None


def _positive_ints(value: Any, path: str) -> tuple[list[Problem], Any]:
    if not isinstance(value, list | tuple):
        return [(path, "must be an array of positive integers")], None
    problems: list[Problem] = []
    for i, item in enumerate(value):
        problems += _positive_int(item, _path(path, i))[0]
    return problems, None if problems else list(value)


_DECIMAL_ANY = _decimal(None)

BULK_FIELDS: Final[Mapping[str, Check]] = {
    "account_email": _email,
    "cost": _DECIMAL_ANY,
    "discount": _decimal(MAX_DISCOUNT),
    "eticket": _boolean,
    "external_notes": _string,
    "face_value": _DECIMAL_ANY,
    "format": _enum(FORMATS),
    "in_hand": _boolean,
    "in_hand_on": _date,
    "instant_delivery": _boolean,
    "internal_notes": _string,
    "locked": _boolean,
    "price": _decimal(MAX_PRICE),
    "row": _string,
    "section": _string,
    "speculative": _boolean,
    "split_type": _enum(SPLIT_TYPES),
    "split_override": _positive_ints,
    "taxed_cost": _DECIMAL_ANY,
    "type": _enum(TYPES),
    "view_type": _enum(VIEW_TYPES),
    "wheelchair_accessible": _boolean,
}
"""Attributes a bulk update may set (seed 003's table, plus `locked`), with their checks."""


def _check_fields(
    obj: Mapping[str, Any],
    base: str,
    fields: Mapping[str, Check],
    refused: Mapping[str, str] | None = None,
) -> tuple[list[Problem], dict[str, Any]]:
    """Check each key of `obj`: refused, unknown, blank or of the wrong form."""
    problems: list[Problem] = []
    clean: dict[str, Any] = {}
    for key, value in obj.items():
        path = _path(base, str(key))
        if refused is not None and key in refused:
            problems.append(
                (
                    path,
                    f"cannot be changed by a bulk update: {refused[key]}; "
                    "use Inventory / Update on each listing",
                )
            )
            continue
        check = fields.get(key) if isinstance(key, str) else None
        if check is None:
            msg = "unknown attribute"
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            problems.append((path, msg))
            continue
        if _blank(value):
            empty = isinstance(value, list | tuple)
            problems.append((path, "must not be empty" if empty else "must not be blank"))
            continue
        found, normal = check(value, path)
        if found:
            problems += found
        else:
            clean[key] = normal
    return problems, clean


def _split_rule(obj: Mapping[str, Any], base: str) -> list[Problem]:
    split = obj.get("split_type")
    if isinstance(split, str) and split.upper() == "CUSTOM" and "split_override" not in obj:
        return [(_path(base, "split_override"), "is required when split_type is CUSTOM")]
    return []


def _mapping_problem(value: Any, path: str) -> list[Problem]:
    if isinstance(value, Mapping):
        return []
    return [(path, "must be an object")]


def validate_bulk_update(attrs: Mapping[str, Any]) -> list[Problem]:
    """Every problem with the `inventory` attributes of a Bulk Update; empty when valid.

    Every attribute is optional in a bulk update, so the conditional rules apply only to what
    the update touches:

    - `split_override` is required when the update sets `split_type: CUSTOM`.
    - `in_hand_on` is required when the update sets `in_hand: false`. An update that touches
      neither `in_hand` nor `in_hand_on` (seed 003's own example sets only `price`) leaves the
      listings' delivery dates alone and needs neither; one that sets only `in_hand_on` is
      fine too. Seed 003's "required when in_hand is false or not provided" is read as a rule
      about the listing, which an update that does not mention `in_hand` cannot break.

    Also: at least one attribute; `remote_id`, `quantity` and `seats` refused with seed 003's
    reason; unknown attributes, blank values and values of the wrong form rejected.
    """
    if not isinstance(attrs, Mapping):
        return _mapping_problem(attrs, "")
    if not attrs:
        return [("", "must set at least one attribute")]
    problems, _ = _check_fields(attrs, "", BULK_FIELDS, BULK_REFUSED)
    problems += _split_rule(attrs, "")
    if attrs.get("in_hand") is False and "in_hand_on" not in attrs:
        problems.append(("in_hand_on", "is required when in_hand is false"))
    return problems


def normalize_update(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The exact `inventory` attributes to send for valid bulk-update `attrs`.

    Keys sorted, enums in their documented spelling, decimals as strings with 2 decimals
    (`150` -> `"150.00"`), dates as `YYYY-MM-DD`: the same rule always gives the same bytes, so
    a retried action sends what the first attempt sent. Raises InvalidAttributes if `attrs`
    are not valid.
    """
    problems = validate_bulk_update(attrs)
    if problems:
        raise InvalidAttributes(problems)
    _, clean = _check_fields(attrs, "", BULK_FIELDS, BULK_REFUSED)
    return {key: clean[key] for key in sorted(clean)}


# -- create (seed 002) ------------------------------------------------------------------------


def _quantity(value: Any, path: str) -> tuple[list[Problem], Any]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return [], value
    return [(path, f"must be an integer of at least 1 (got {value!r})")], None


def _seats(value: Any, path: str) -> tuple[list[Problem], Any]:
    if not isinstance(value, list | tuple):
        return [(path, "must be an array of seat objects")], None
    problems: list[Problem] = []
    seen: set[int] = set()
    for i, seat in enumerate(value):
        where = _path(path, i)
        if not isinstance(seat, Mapping):
            problems.append((where, "must be an object"))
            continue
        problems += _required(seat, where, ("seat",))
        found, clean = _check_fields(seat, where, _SEAT_FIELDS)
        problems += found
        number = clean.get("seat")
        if isinstance(number, int):
            if number in seen:
                problems.append((_path(where, "seat"), f"seat {number} is listed twice"))
            seen.add(number)
    return problems, value


_SEAT_FIELDS: Final[Mapping[str, Check]] = {
    "seat": _positive_int,
    "barcode": _string,
    "primary_ticket_id": _string,
    "verification_id": _string,
}

_TICKET_FIELDS: Final[Mapping[str, Check]] = {
    **BULK_FIELDS,
    "quantity": _quantity,
    "remote_id": _record_id,
    "seats": _seats,
}
_TICKET_REQUIRED: Final = ("format", "price", "quantity", "remote_id", "row", "section", "type")

_EVENT_FIELDS: Final[Mapping[str, Check]] = {
    "id": _record_id,
    "name": _string,
    "occurs_at_date": _date,
    "occurs_at_time": _time,
    "tbd": _boolean,
    "type": _enum(TYPES),
}
_OFFICE_FIELDS: Final[Mapping[str, Check]] = {"id": _record_id, "name": _string}
_VENUE_FIELDS: Final[Mapping[str, Check]] = {"id": _record_id, "name": _string}

_CREATE_PARTS: Final[Mapping[str, tuple[Mapping[str, Check], tuple[str, ...]]]] = {
    "event": (_EVENT_FIELDS, ("id",)),
    "office": (_OFFICE_FIELDS, ("id",)),
    "ticket": (_TICKET_FIELDS, _TICKET_REQUIRED),
    "venue": (_VENUE_FIELDS, ("name",)),
}


def _required(obj: Mapping[str, Any], base: str, keys: tuple[str, ...]) -> list[Problem]:
    return [(_path(base, key), "is required") for key in keys if key not in obj]


def validate_create(inventory: Mapping[str, Any]) -> list[Problem]:
    """Every problem with the `inventory` object of a Create (seed 002); empty when valid.

    Seed 002's tables lost their attribute names; they are matched to its example by order:

    - `event`, `office`, `ticket` and `venue` are all required objects.
    - `event.id` required; `name`, `occurs_at_date` (date), `occurs_at_time` (HH:MM:SS),
      `tbd` (boolean) and `type` (EVENT or PARKING) optional.
    - `office.id` required, `office.name` optional; `venue.name` required, `venue.id` optional.
    - `ticket`: `format`, `price`, `quantity` (integer at least 1), `remote_id` (integer above
      0), `row`, `section` and `type` required; `in_hand_on` required when `in_hand` is false
      or missing (a new listing has no earlier value to fall back on); `split_override` when
      `split_type` is CUSTOM; `seats`, when given, at least one seat object with a unique
      integer `seat` and optional string `barcode`, `primary_ticket_id`, `verification_id`,
      and as many as `quantity`. The other ticket attributes are those of a bulk update.
    - IDs (`event.id`, `office.id`, `venue.id`, `remote_id`) may be integers or strings of
      digits, as the seed's example sends them.

    Key paths look like `ticket.price` and `ticket.seats[0].seat`.
    """
    if not isinstance(inventory, Mapping):
        return _mapping_problem(inventory, "")
    problems: list[Problem] = []
    for key in inventory:
        if key not in _CREATE_PARTS:
            msg = "unknown attribute"
            close = difflib.get_close_matches(str(key), list(_CREATE_PARTS), n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            problems.append((str(key), msg))
    for part, (fields, required) in _CREATE_PARTS.items():
        if part not in inventory:
            problems.append((part, "is required"))
            continue
        obj = inventory[part]
        if not isinstance(obj, Mapping):
            problems.append((part, "must be an object"))
            continue
        problems += _required(obj, part, required)
        problems += _check_fields(obj, part, fields)[0]
    ticket = inventory.get("ticket")
    if isinstance(ticket, Mapping):
        problems += _split_rule(ticket, "ticket")
        if ticket.get("in_hand") is not True and "in_hand_on" not in ticket:
            problems.append(("ticket.in_hand_on", "is required when in_hand is false or missing"))
        seats, quantity = ticket.get("seats"), ticket.get("quantity")
        if (
            isinstance(seats, list | tuple)
            and seats
            and isinstance(quantity, int)
            and not isinstance(quantity, bool)
            and quantity >= 1
            and quantity != len(seats)
        ):
            problems.append(("ticket.quantity", f"must match the number of seats ({len(seats)})"))
    return problems
