"""Table tests for maintenance windows, above all on daylight-saving nights.

Every expected value below was worked out by hand from the rules in the module docstring of
`monitor.core.maintenance` and is written as a literal UTC instant:

* a start or end in a skipped hour moves to the first instant after the gap, and a window that
  would then be empty keeps its nominal length;
* a start in a repeated hour takes the first occurrence, an end the second.

2026 transitions used (checked against zoneinfo):

* America/New_York   03-08 02:00 EST -> 03:00 EDT (07:00Z); 11-01 02:00 EDT -> 01:00 EST (06:00Z)
* Europe/Berlin      03-29 02:00 CET -> 03:00 CEST (01:00Z); 10-25 03:00 CEST -> 02:00 CET (01:00Z)
* Australia/Sydney   04-05 03:00 AEDT -> 02:00 AEST (04-04 16:00Z);
                     10-04 02:00 AEST -> 03:00 AEDT (10-03 16:00Z)
* Australia/Adelaide 04-05 03:00 ACDT -> 02:00 ACST (04-04 16:30Z);
                     10-04 02:00 ACST -> 03:00 ACDT (10-03 16:30Z)
* Australia/Lord_Howe 04-05 02:00 +11 -> 01:30 +10:30 (04-04 15:00Z);
                     10-04 02:00 +10:30 -> 02:30 +11 (10-03 15:30Z)
* America/Havana     03-08 00:00 CST -> 01:00 CDT (05:00Z)   (DST change at midnight)
* Asia/Kolkata       +05:30 all year
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.core.maintenance import (
    DEFAULT_WINDOW,
    Window,
    current_window,
    in_window,
    local_instant,
    window_bounds,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"
SYDNEY = "Australia/Sydney"
ADELAIDE = "Australia/Adelaide"
LORD_HOWE = "Australia/Lord_Howe"
KOLKATA = "Asia/Kolkata"
HAVANA = "America/Havana"


def u(text: str) -> datetime:
    """'2026-03-08 07:00' -> an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def w(start: str, end: str) -> Window:
    """'02:00', '03:00' -> Window."""
    (sh, sm), (eh, em) = (map(int, start.split(":")), map(int, end.split(":")))
    return Window(time(sh, sm), time(eh, em))


W0203 = w("02:00", "03:00")
W0204 = w("02:00", "04:00")
W0104 = w("01:00", "04:00")
W0102 = w("01:00", "02:00")
W2301 = w("23:30", "01:00")

# (zone, window, local date the window starts on, expected UTC start, expected UTC end)
BOUNDS = [
    # --- ordinary nights ----------------------------------------------------------------------
    pytest.param(NY, W0203, "2026-01-15", "2026-01-15 07:00", "2026-01-15 08:00", id="ny-winter"),
    pytest.param(NY, W0203, "2026-07-15", "2026-07-15 06:00", "2026-07-15 07:00", id="ny-summer"),
    pytest.param(NY, W0203, "2026-03-07", "2026-03-07 07:00", "2026-03-07 08:00", id="ny-eve-of-spring"),
    pytest.param(NY, W0203, "2026-03-09", "2026-03-09 06:00", "2026-03-09 07:00", id="ny-after-spring"),
    pytest.param(BERLIN, W0203, "2026-01-15", "2026-01-15 01:00", "2026-01-15 02:00", id="berlin-winter"),
    pytest.param(BERLIN, W0203, "2026-07-15", "2026-07-15 00:00", "2026-07-15 01:00", id="berlin-summer"),
    # --- US spring forward: 02:00 EST -> 03:00 EDT, window becomes 03:00-04:00 EDT -------------
    pytest.param(NY, W0203, "2026-03-08", "2026-03-08 07:00", "2026-03-08 08:00", id="us-spring-0200-0300"),
    pytest.param(NY, W0204, "2026-03-08", "2026-03-08 07:00", "2026-03-08 08:00", id="us-spring-0200-0400"),
    pytest.param(NY, W0104, "2026-03-08", "2026-03-08 06:00", "2026-03-08 08:00", id="us-spring-venue-0100-0400"),
    pytest.param(NY, w("02:00", "02:30"), "2026-03-08", "2026-03-08 07:00", "2026-03-08 07:30", id="us-spring-emptied-keeps-30min"),
    # --- US fall back: 01:00-02:00 repeats -----------------------------------------------------
    pytest.param(NY, W0203, "2026-11-01", "2026-11-01 07:00", "2026-11-01 08:00", id="us-fall-0200-0300"),
    pytest.param(NY, W0102, "2026-11-01", "2026-11-01 05:00", "2026-11-01 07:00", id="us-fall-start-in-repeat-first"),
    pytest.param(NY, w("00:30", "01:30"), "2026-11-01", "2026-11-01 04:30", "2026-11-01 06:30", id="us-fall-end-in-repeat-second"),
    pytest.param(NY, W0204, "2026-11-01", "2026-11-01 07:00", "2026-11-01 09:00", id="us-fall-0200-0400"),
    pytest.param(NY, W0104, "2026-11-01", "2026-11-01 05:00", "2026-11-01 09:00", id="us-fall-venue-0100-0400"),
    # --- EU spring forward: 02:00 CET -> 03:00 CEST, window becomes 03:00-04:00 CEST -----------
    pytest.param(BERLIN, W0203, "2026-03-29", "2026-03-29 01:00", "2026-03-29 02:00", id="eu-spring-0200-0300"),
    pytest.param(BERLIN, W0204, "2026-03-29", "2026-03-29 01:00", "2026-03-29 02:00", id="eu-spring-0200-0400"),
    pytest.param(BERLIN, W0104, "2026-03-29", "2026-03-29 00:00", "2026-03-29 02:00", id="eu-spring-venue-0100-0400"),
    # --- EU fall back: 02:00-03:00 repeats, window 02:00 CEST -> 03:00 CET (two hours) ---------
    pytest.param(BERLIN, W0203, "2026-10-25", "2026-10-25 00:00", "2026-10-25 02:00", id="eu-fall-0200-0300"),
    pytest.param(BERLIN, W0204, "2026-10-25", "2026-10-25 00:00", "2026-10-25 03:00", id="eu-fall-0200-0400"),
    pytest.param(BERLIN, W0104, "2026-10-25", "2026-10-24 23:00", "2026-10-25 03:00", id="eu-fall-venue-0100-0400"),
    # --- southern hemisphere -------------------------------------------------------------------
    pytest.param(SYDNEY, W0203, "2026-07-15", "2026-07-14 16:00", "2026-07-14 17:00", id="sydney-winter"),
    pytest.param(SYDNEY, W0203, "2026-01-15", "2026-01-14 15:00", "2026-01-14 16:00", id="sydney-summer"),
    pytest.param(SYDNEY, W0203, "2026-10-04", "2026-10-03 16:00", "2026-10-03 17:00", id="sydney-spring-forward"),
    pytest.param(SYDNEY, W0203, "2026-04-05", "2026-04-04 15:00", "2026-04-04 17:00", id="sydney-fall-back"),
    # --- half-hour offsets ---------------------------------------------------------------------
    pytest.param(KOLKATA, W0203, "2026-03-08", "2026-03-07 20:30", "2026-03-07 21:30", id="kolkata"),
    pytest.param(KOLKATA, W2301, "2026-03-08", "2026-03-08 18:00", "2026-03-08 19:30", id="kolkata-midnight"),
    pytest.param(ADELAIDE, W0203, "2026-01-15", "2026-01-14 15:30", "2026-01-14 16:30", id="adelaide-summer"),
    pytest.param(ADELAIDE, W0203, "2026-07-15", "2026-07-14 16:30", "2026-07-14 17:30", id="adelaide-winter"),
    pytest.param(ADELAIDE, W0203, "2026-10-04", "2026-10-03 16:30", "2026-10-03 17:30", id="adelaide-spring-forward"),
    pytest.param(ADELAIDE, W0203, "2026-04-05", "2026-04-04 15:30", "2026-04-04 17:30", id="adelaide-fall-back"),
    # --- 30-minute DST shift -------------------------------------------------------------------
    pytest.param(LORD_HOWE, W0203, "2026-10-04", "2026-10-03 15:30", "2026-10-03 16:00", id="lord-howe-spring-30min-gap"),
    pytest.param(LORD_HOWE, w("02:00", "02:30"), "2026-10-04", "2026-10-03 15:30", "2026-10-03 16:00", id="lord-howe-spring-emptied"),
    pytest.param(LORD_HOWE, W0203, "2026-04-05", "2026-04-04 15:30", "2026-04-04 16:30", id="lord-howe-fall-0200-0300"),
    pytest.param(LORD_HOWE, w("01:30", "02:30"), "2026-04-05", "2026-04-04 14:30", "2026-04-04 16:00", id="lord-howe-fall-start-in-repeat"),
    # --- window crossing midnight --------------------------------------------------------------
    pytest.param(BERLIN, W2301, "2026-01-15", "2026-01-15 22:30", "2026-01-16 00:00", id="midnight-berlin-ordinary"),
    pytest.param(NY, W2301, "2026-10-31", "2026-11-01 03:30", "2026-11-01 06:00", id="midnight-us-fall-end-second-0100"),
    pytest.param(NY, W2301, "2026-03-07", "2026-03-08 04:30", "2026-03-08 06:00", id="midnight-us-spring-eve"),
    pytest.param(HAVANA, W2301, "2026-03-07", "2026-03-08 04:30", "2026-03-08 05:00", id="midnight-havana-gap-at-midnight"),
    # --- a start or end in the middle of a skipped hour ----------------------------------------
    pytest.param(NY, w("02:30", "03:30"), "2026-03-08", "2026-03-08 07:00", "2026-03-08 07:30", id="us-spring-start-mid-gap"),
    pytest.param(NY, w("02:30", "03:00"), "2026-03-08", "2026-03-08 07:00", "2026-03-08 07:30", id="us-spring-mid-gap-emptied"),
    pytest.param(NY, w("01:00", "02:30"), "2026-03-08", "2026-03-08 06:00", "2026-03-08 07:00", id="us-spring-end-mid-gap"),
    pytest.param(LORD_HOWE, w("02:15", "03:00"), "2026-10-04", "2026-10-03 15:30", "2026-10-03 16:00", id="lord-howe-start-mid-gap"),
    pytest.param(HAVANA, w("23:30", "00:30"), "2026-03-07", "2026-03-08 04:30", "2026-03-08 05:00", id="midnight-havana-end-mid-gap"),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "window", "day", "start", "end"), BOUNDS)
def test_window_bounds(zone, window, day, start, end):
    got = window_bounds(date.fromisoformat(day), ZoneInfo(zone), window)
    assert got == (u(start), u(end))
    assert all(b.utcoffset() == timedelta(0) for b in got)


# (zone, window, just before start, at start, just before end, at end) -> False, True, True, False
EDGES = [
    ("ny-winter", NY, W0203, "2026-01-15 06:59", "2026-01-15 07:00", "2026-01-15 07:59", "2026-01-15 08:00"),
    ("ny-summer", NY, W0203, "2026-07-15 05:59", "2026-07-15 06:00", "2026-07-15 06:59", "2026-07-15 07:00"),
    ("berlin-winter", BERLIN, W0203, "2026-01-15 00:59", "2026-01-15 01:00", "2026-01-15 01:59", "2026-01-15 02:00"),
    ("berlin-summer", BERLIN, W0203, "2026-07-14 23:59", "2026-07-15 00:00", "2026-07-15 00:59", "2026-07-15 01:00"),
    ("us-spring-forward", NY, W0203, "2026-03-08 06:59", "2026-03-08 07:00", "2026-03-08 07:59", "2026-03-08 08:00"),
    ("us-spring-0200-0400", NY, W0204, "2026-03-08 06:59", "2026-03-08 07:00", "2026-03-08 07:59", "2026-03-08 08:00"),
    ("us-spring-venue-0100-0400", NY, W0104, "2026-03-08 05:59", "2026-03-08 06:00", "2026-03-08 07:59", "2026-03-08 08:00"),
    ("us-fall-back", NY, W0203, "2026-11-01 06:59", "2026-11-01 07:00", "2026-11-01 07:59", "2026-11-01 08:00"),
    ("us-fall-0100-0200", NY, W0102, "2026-11-01 04:59", "2026-11-01 05:00", "2026-11-01 06:59", "2026-11-01 07:00"),
    ("eu-spring-forward", BERLIN, W0203, "2026-03-29 00:59", "2026-03-29 01:00", "2026-03-29 01:59", "2026-03-29 02:00"),
    ("eu-spring-0200-0400", BERLIN, W0204, "2026-03-29 00:59", "2026-03-29 01:00", "2026-03-29 01:59", "2026-03-29 02:00"),
    ("eu-fall-back", BERLIN, W0203, "2026-10-24 23:59", "2026-10-25 00:00", "2026-10-25 01:59", "2026-10-25 02:00"),
    ("eu-fall-0200-0400", BERLIN, W0204, "2026-10-24 23:59", "2026-10-25 00:00", "2026-10-25 02:59", "2026-10-25 03:00"),
    ("eu-fall-venue-0100-0400", BERLIN, W0104, "2026-10-24 22:59", "2026-10-24 23:00", "2026-10-25 02:59", "2026-10-25 03:00"),
    ("sydney-spring-forward", SYDNEY, W0203, "2026-10-03 15:59", "2026-10-03 16:00", "2026-10-03 16:59", "2026-10-03 17:00"),
    ("sydney-fall-back", SYDNEY, W0203, "2026-04-04 14:59", "2026-04-04 15:00", "2026-04-04 16:59", "2026-04-04 17:00"),
    ("kolkata", KOLKATA, W0203, "2026-03-07 20:29", "2026-03-07 20:30", "2026-03-07 21:29", "2026-03-07 21:30"),
    ("adelaide-summer", ADELAIDE, W0203, "2026-01-14 15:29", "2026-01-14 15:30", "2026-01-14 16:29", "2026-01-14 16:30"),
    ("adelaide-spring-forward", ADELAIDE, W0203, "2026-10-03 16:29", "2026-10-03 16:30", "2026-10-03 17:29", "2026-10-03 17:30"),
    ("adelaide-fall-back", ADELAIDE, W0203, "2026-04-04 15:29", "2026-04-04 15:30", "2026-04-04 17:29", "2026-04-04 17:30"),
    ("lord-howe-spring-forward", LORD_HOWE, W0203, "2026-10-03 15:29", "2026-10-03 15:30", "2026-10-03 15:59", "2026-10-03 16:00"),
    ("lord-howe-fall-back", LORD_HOWE, W0203, "2026-04-04 15:29", "2026-04-04 15:30", "2026-04-04 16:29", "2026-04-04 16:30"),
    ("midnight-berlin-ordinary", BERLIN, W2301, "2026-01-15 22:29", "2026-01-15 22:30", "2026-01-15 23:59", "2026-01-16 00:00"),
    ("midnight-kolkata", KOLKATA, W2301, "2026-03-08 17:59", "2026-03-08 18:00", "2026-03-08 19:29", "2026-03-08 19:30"),
    ("midnight-us-fall-back", NY, W2301, "2026-11-01 03:29", "2026-11-01 03:30", "2026-11-01 05:59", "2026-11-01 06:00"),
    ("midnight-havana-spring", HAVANA, W2301, "2026-03-08 04:29", "2026-03-08 04:30", "2026-03-08 04:59", "2026-03-08 05:00"),
]  # fmt: skip

_EDGE_LABELS = (
    ("before-start", False),
    ("at-start", True),
    ("before-end", True),
    ("at-end", False),
)
EDGE_PARAMS = [
    pytest.param(zone, window, u(instant), expected, id=f"{name}-{label}")
    for name, zone, window, *instants in EDGES
    for instant, (label, expected) in zip(instants, _EDGE_LABELS, strict=True)
]


@pytest.mark.parametrize(("zone", "window", "now", "expected"), EDGE_PARAMS)
def test_in_window_edges(zone, window, now, expected):
    assert in_window(now, ZoneInfo(zone), window) is expected


# Instants inside the window that naive code gets wrong, and the windows with a start or end in
# the middle of a skipped hour (zone, window, UTC instant, expected).
POINTS = [
    pytest.param(NY, W0203, "2026-03-08 06:30", False, id="us-spring-0130-est-before"),
    pytest.param(NY, W0203, "2026-11-01 05:30", False, id="us-fall-0130-edt-before"),
    pytest.param(NY, W0203, "2026-11-01 06:30", False, id="us-fall-0130-est-before"),
    pytest.param(NY, W0102, "2026-11-01 05:30", True, id="us-fall-0130-edt-first-pass-in"),
    pytest.param(NY, W0102, "2026-11-01 06:30", True, id="us-fall-0130-est-second-pass-in"),
    pytest.param(BERLIN, W0203, "2026-10-25 00:30", True, id="eu-fall-0230-cest-first-pass-in"),
    pytest.param(BERLIN, W0203, "2026-10-25 01:30", True, id="eu-fall-0230-cet-second-pass-in"),
    pytest.param(SYDNEY, W0203, "2026-04-04 16:30", True, id="sydney-fall-second-pass-in"),
    pytest.param(NY, W2301, "2026-11-01 05:30", True, id="midnight-us-fall-0130-edt-in"),
    pytest.param(NY, W2301, "2026-11-01 06:30", False, id="midnight-us-fall-0130-est-out"),
    pytest.param(NY, W2301, "2026-11-01 04:00", True, id="midnight-us-fall-after-midnight-in"),
    pytest.param(NY, w("02:30", "03:30"), "2026-03-08 06:59", False, id="us-spring-mid-gap-before"),
    pytest.param(
        NY, w("02:30", "03:30"), "2026-03-08 07:00", True, id="us-spring-mid-gap-at-start"
    ),
    pytest.param(
        NY, w("02:30", "03:30"), "2026-03-08 07:29", True, id="us-spring-mid-gap-before-end"
    ),
    pytest.param(
        NY, w("02:30", "03:30"), "2026-03-08 07:30", False, id="us-spring-mid-gap-at-end"
    ),
    pytest.param(
        LORD_HOWE, w("02:15", "03:00"), "2026-10-03 15:30", True, id="lord-howe-mid-gap-at-start"
    ),
    pytest.param(LORD_HOWE, w("02:15", "03:00"), "2026-10-03 15:59", True, id="lord-howe-mid-gap-before-end"),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "window", "now", "expected"), POINTS)
def test_in_window_points(zone, window, now, expected):
    assert in_window(u(now), ZoneInfo(zone), window) is expected


# (zone, local date, local time, later, expected UTC instant)
INSTANTS = [
    pytest.param(NY, "2026-01-15", "02:00", False, "2026-01-15 07:00", id="ordinary"),
    pytest.param(NY, "2026-01-15", "02:00", True, "2026-01-15 07:00", id="ordinary-later-no-effect"),
    pytest.param(KOLKATA, "2026-03-08", "02:00", False, "2026-03-07 20:30", id="half-hour-offset"),
    pytest.param(NY, "2026-03-08", "02:00", False, "2026-03-08 07:00", id="gap-start-moves-after-gap"),
    pytest.param(NY, "2026-03-08", "02:00", True, "2026-03-08 07:00", id="gap-end-moves-after-gap"),
    pytest.param(NY, "2026-03-08", "03:00", False, "2026-03-08 07:00", id="first-time-after-gap"),
    pytest.param(NY, "2026-11-01", "01:30", False, "2026-11-01 05:30", id="repeat-first-for-start"),
    pytest.param(NY, "2026-11-01", "01:30", True, "2026-11-01 06:30", id="repeat-second-for-end"),
    pytest.param(BERLIN, "2026-10-25", "02:00", False, "2026-10-25 00:00", id="eu-repeat-first"),
    pytest.param(BERLIN, "2026-10-25", "02:00", True, "2026-10-25 01:00", id="eu-repeat-second"),
    pytest.param(LORD_HOWE, "2026-04-05", "01:45", False, "2026-04-04 14:45", id="lord-howe-repeat-first"),
    pytest.param(LORD_HOWE, "2026-04-05", "01:45", True, "2026-04-04 15:15", id="lord-howe-repeat-second"),
    pytest.param(NY, "2026-03-08", "02:30", False, "2026-03-08 07:00", id="mid-gap-moves-to-gap-end"),
    pytest.param(NY, "2026-03-08", "02:30", True, "2026-03-08 07:00", id="mid-gap-end-moves-to-gap-end"),
    pytest.param(LORD_HOWE, "2026-10-04", "02:15", False, "2026-10-03 15:30", id="lord-howe-mid-gap"),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "day", "clock", "later", "expected"), INSTANTS)
def test_local_instant(zone, day, clock, later, expected):
    got = local_instant(
        date.fromisoformat(day), time.fromisoformat(clock), ZoneInfo(zone), later=later
    )
    assert got == u(expected)


@pytest.mark.parametrize(
    ("zone", "window", "now", "expected"),
    [
        pytest.param(
            BERLIN, W0203, "2026-10-25 01:30", ("2026-10-25 00:00", "2026-10-25 02:00"), id="eu-fall"
        ),
        pytest.param(
            BERLIN, W2301, "2026-01-15 23:30", ("2026-01-15 22:30", "2026-01-16 00:00"),
            id="midnight-window-started-yesterday-local",
        ),
        pytest.param(NY, W0203, "2026-03-08 08:00", None, id="outside"),
    ],
)  # fmt: skip
def test_current_window(zone, window, now, expected):
    got = current_window(u(now), ZoneInfo(zone), window)
    assert got == (None if expected is None else (u(expected[0]), u(expected[1])))


def test_in_window_accepts_any_aware_datetime():
    tz = ZoneInfo(NY)
    at_start = u("2026-03-08 07:00").astimezone(tz)  # 03:00 EDT
    before = u("2026-03-08 06:59").astimezone(tz)  # 01:59 EST
    assert in_window(at_start, tz, W0203)
    assert not in_window(before, tz, W0203)
    assert in_window(at_start.astimezone(ZoneInfo(BERLIN)), tz, W0203)


@pytest.mark.parametrize(
    ("window", "nominal", "text"),
    [
        pytest.param(W0203, timedelta(hours=1), "02:00-03:00", id="one-hour"),
        pytest.param(W0104, timedelta(hours=3), "01:00-04:00", id="venue"),
        pytest.param(W2301, timedelta(hours=1, minutes=30), "23:30-01:00", id="crosses-midnight"),
    ],
)
def test_window_nominal_and_str(window, nominal, text):
    assert window.nominal == nominal
    assert str(window) == text


def test_default_window_is_2am_to_3am():
    assert DEFAULT_WINDOW == W0203
