"""Limits of the runtime API (the OpenAPI document states the same numbers)."""

from __future__ import annotations

#: A URL, at most this many characters.
MAX_URL_LENGTH = 2048
#: Secrets of one subscription (several only during a rotation).
MAX_SECRETS = 10
#: Subscriptions made through the API (the config file's are not counted).
MAX_API_SUBSCRIPTIONS = 100
#: Watch sets, the config file's and the API's together.
MAX_WATCH_SETS = 1000
#: Events in one watch set made through the API.
MAX_SET_EVENTS = 1_000_000
#: Dead-letter IDs in one replay request.
MAX_REPLAY_IDS = 1000
#: Entries in one page of a listing.
MAX_PAGE = 1000
