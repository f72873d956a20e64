"""availability-monitor: watches Ticketmaster Inventory Status and reports transitions."""

__version__ = "0.1.0"
