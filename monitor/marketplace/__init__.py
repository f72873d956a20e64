"""A broker marketplace's inventory API (seeds 002 and 003): validation of what is sent.

The HTTP client is `monitor.upstream.marketplace`, the simulated marketplace
`monitor.simulator.marketplace`.
"""

from monitor.marketplace.validation import (
    BULK_FIELDS,
    BULK_REFUSED,
    FORMATS,
    MAX_DISCOUNT,
    MAX_PRICE,
    SPLIT_TYPES,
    TYPES,
    VIEW_TYPES,
    InvalidAttributes,
    Problem,
    normalize_update,
    validate_bulk_update,
    validate_create,
)

__all__ = [
    "BULK_FIELDS",
    "BULK_REFUSED",
    "FORMATS",
    "MAX_DISCOUNT",
    "MAX_PRICE",
    "SPLIT_TYPES",
    "TYPES",
    "VIEW_TYPES",
    "InvalidAttributes",
    "Problem",
    "normalize_update",
    "validate_bulk_update",
    "validate_create",
]
