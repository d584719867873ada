"""A LOKE sandbox in the box: LOKE's auth, API and webhooks simulated on a local port.

`server` holds the state and answers requests (`api` routes and pages them), `firer` delivers
signed webhooks with LOKE's delays, duplicates and retry schedule, `seeding` and `simulation`
make up deterministic organizations and their activity. It serves `loke-sync sandbox` and
`loke-sync demo`, and it is the fake every test of the LOKE client runs against.
"""

from devtools.sandbox.firer import IMMEDIATE, DeliveryStyle, RetrySchedule, WebhookFirer
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.state import OrgSnapshot

__all__ = [
    "IMMEDIATE",
    "DeliveryStyle",
    "LokeSandbox",
    "OrgSnapshot",
    "RetrySchedule",
    "WebhookFirer",
]
