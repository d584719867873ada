"""`<id:...>` in a route: an id the store can hold (an organization, a customer, a list), or no
match at all (404).

An id of more than 64 characters, or with a NUL (`%00`), names nothing we keep; matched as any
other, it reached the database, which refused the NUL with an error the receiver took for an
outage (503, so LOKE sent it again five times) and the admin API answered with a 500.
"""

from __future__ import annotations

from werkzeug.routing import BaseConverter

from app.validation import ID_IN_PATH


class IdConverter(BaseConverter):
    regex = ID_IN_PATH
