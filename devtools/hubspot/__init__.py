"""A fake HubSpot (CRM API: properties, batch objects, associations, lists, limits) written by
hand from the shared wire contract.

One fake for the HubSpot destination's tests, the benches (`python -m devtools.hubspot`) and the
demo (`GET /_fake/state` draws what it holds). Like HubSpot it checks tokens, every value by its
property's type, emails and unique properties, answers traced batches 207 out of order, keeps
rolling 10-second and daily limits; and it can be told to storm, lock, fail or answer empty.
"""

from devtools.hubspot.server import FakeHubSpot
from devtools.hubspot.traffic import RequestCounts

__all__ = ["FakeHubSpot", "RequestCounts"]
