"""The built-in upstream simulator: a deterministic, fault-injecting stand-in for the Ticketmaster
Inventory Status API and the Partner API (OAuth, event details), for the demo, the tests and the
benchmarks.

    async with Simulator(seed=1, faults=[{"kind": "error", "count": 2}]) as sim:
        ...  # GET f"{sim.url}/inventory-status/v1/availability?apikey=k&events=A,B"
"""

from monitor.simulator.app import MAX_LINE, Simulator, add_arguments, serve_from_args
from monitor.simulator.faults import Decision, Fault, FaultPlan, parse_faults
from monitor.simulator.inventory import (
    API,
    MAX_IDS,
    NO_ANSWER,
    PATH,
    InventoryAPI,
    Quota,
    RequestLog,
    RequestRecord,
    SpikeArrest,
    max_in_window,
)
from monitor.simulator.partner import VENUES, EventScript, PartnerSim, Venue, venue_by_id
from monitor.simulator.world import EVENT_ID_RE, RESALE_STATUSES, World

__all__ = [
    "API",
    "EVENT_ID_RE",
    "MAX_IDS",
    "MAX_LINE",
    "NO_ANSWER",
    "PATH",
    "RESALE_STATUSES",
    "VENUES",
    "Decision",
    "EventScript",
    "Fault",
    "FaultPlan",
    "InventoryAPI",
    "PartnerSim",
    "Quota",
    "RequestLog",
    "RequestRecord",
    "Simulator",
    "SpikeArrest",
    "Venue",
    "World",
    "add_arguments",
    "max_in_window",
    "parse_faults",
    "serve_from_args",
    "venue_by_id",
]
