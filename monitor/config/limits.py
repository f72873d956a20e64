"""Every bound on what a config file, an events file or an API body may hold, in one place.

The config models, the file readers, the HTTP API (which validates bodies with the same
models), the README and the tests read these numbers from here. Bounds are inclusive unless a
name says "exclusive": `TIMEOUT_SECONDS = (0, 300)` with `gt` means more than 0, at most 300.
"""

from __future__ import annotations

from typing import Final

from monitor.secrets import MAX_SECRET_CHARS

# -- times (seconds unless the name says otherwise) -------------------------------------------

#: `interval_seconds` and each per-status interval: 1 s to 30 days.
INTERVAL_MIN: Final = 1.0
INTERVAL_MAX: Final = 2_592_000.0
#: Every `timeout_seconds`: more than 0, at most 5 minutes.
TIMEOUT_MAX: Final = 300.0
#: `rate_limit.per_seconds`: 1 ms to a day.
PER_SECONDS_MIN: Final = 0.001
PER_SECONDS_MAX: Final = 86_400.0
#: `rate_limit.requests`.
REQUESTS_MIN: Final = 1
REQUESTS_MAX: Final = 100_000
#: `rate_limit.margin`.
MARGIN_MAX: Final = 0.5
#: `backoff_base_seconds`: more than 0, at most an hour.
BACKOFF_BASE_MAX: Final = 3_600.0
#: `backoff_max_seconds`, `auth_backoff_seconds`: more than 0, at most a day.
BACKOFF_MAX_MAX: Final = 86_400.0
AUTH_BACKOFF_MAX: Final = 86_400.0
#: `quarantine_seconds`: 0 to 30 days.
QUARANTINE_MAX: Final = 2_592_000.0
#: `daily_quota`.
DAILY_QUOTA_MAX: Final = 1_000_000_000
#: `notifications.retry_schedule`: 1 to 50 delays, each 0 to 7 days.
RETRY_ENTRIES_MAX: Final = 50
RETRY_DELAY_MAX: Final = 604_800.0
#: `alertmanager.resend_seconds`.
RESEND_MIN: Final = 1.0
RESEND_MAX: Final = 86_400.0
#: `partner.refresh_hours`, `partner.not_found_retry_hours`: more than 0, at most 30 days.
PARTNER_HOURS_MAX: Final = 720.0
#: `cluster.lease_seconds`.
LEASE_MIN: Final = 2.0
LEASE_MAX: Final = 600.0
#: `cluster.claim_seconds`, `server.stall_seconds`: more than 0, at most a day.
CLAIM_MAX: Final = 86_400.0
STALL_MAX: Final = 86_400.0

# -- watch sets -------------------------------------------------------------------------------

#: `priority`: a whole number (not a boolean, not a fraction).
PRIORITY_MIN: Final = -1000
PRIORITY_MAX: Final = 1000
CONFIRM_AFTER_MIN: Final = 1
CONFIRM_AFTER_MAX: Final = 100

# -- identifiers and strings ------------------------------------------------------------------

#: Event IDs: 1 to 64 characters of [A-Za-z0-9_-].
EVENT_ID_MAX: Final = 64
#: Names of watch sets, webhooks, actions and channels: 1 to 64 characters of [a-z0-9_-].
NAME_MAX: Final = 64
#: Listing IDs: a positive signed 64-bit integer.
LISTING_ID_MAX: Final = 2**63 - 1
#: URLs: length, one DNS label, the whole host name.
URL_MAX: Final = 2_048
DNS_LABEL_MAX: Final = 63
HOST_MAX: Final = 253
#: Free strings (a venue's name, an alert name).
FREE_STRING_MAX: Final = 256
#: Alertmanager labels: how many, the key (`[a-zA-Z_][a-zA-Z0-9_]*`) and value lengths.
LABELS_MAX: Final = 64
LABEL_KEY_MAX: Final = 128
LABEL_VALUE_MAX: Final = 1_024
#: A marketplace action's `update` body: keys, and bytes once serialised as JSON.
UPDATE_KEYS_MAX: Final = 64
UPDATE_BYTES_MAX: Final = 16_384

# -- list lengths -----------------------------------------------------------------------------

FILTER_ENTRIES_MAX: Final = 1_000
SECRETS_MAX: Final = 10
WATCH_SETS_MAX: Final = 1_000
WEBHOOKS_MAX: Final = 100
VENUES_MAX: Final = 100_000
ACTIONS_MAX: Final = 1_000
#: An action's listings: events, and listings per event.
LISTING_EVENTS_MAX: Final = 1_000_000
LISTINGS_PER_EVENT_MAX: Final = 10_000
#: Events listed inline in one watch set (an events file may hold more).
INLINE_EVENTS_MAX: Final = 1_000_000

# -- files ------------------------------------------------------------------------------------

#: The config file itself (room for a million inline event IDs).
CONFIG_FILE_BYTES_MAX: Final = 128 * 1024 * 1024
#: An `events_file` or a `listings_file`.
EVENTS_FILE_BYTES_MAX: Final = 256 * 1024 * 1024
#: A `*_file` secret, and any secret's length.
SECRET_FILE_BYTES_MAX: Final = 64 * 1024
SECRET_CHARS_MAX: Final = MAX_SECRET_CHARS
#: One CSV field (Python's csv module refuses longer ones anyway).
CSV_FIELD_MAX: Final = 128 * 1024
#: YAML nesting (a config needs about 8 levels).
YAML_DEPTH_MAX: Final = 64
#: Nodes that YAML aliases may add in all, once expanded (a "billion laughs" adds billions).
YAML_ALIAS_NODES_MAX: Final = 100_000
