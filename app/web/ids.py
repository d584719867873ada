"""`<id:...>` in a route: an id the store can hold (an organization, a customer, a list), or no
match at all (404).

An id of more than 64 characters, or with a NUL (`%00`), names nothing we keep. Matched as any
other, it would reach the database, which refuses a NUL with an error that looks like an outage:
the receiver would answer 503 (and LOKE send it again and again), the admin API 500.
"""

from __future__ import annotations

from werkzeug.routing import BaseConverter

from app.core.validation import ID_IN_PATH


class IdConverter(BaseConverter):
    """Matches an id the store can hold; anything else is no route at all."""

    regex = ID_IN_PATH
