"""The fake HubSpot of the tests. It lives in `devtools.hubspot` (not here) so that the demo and
the benches can serve the very same fake; tests import it from here like the other fakes."""

from __future__ import annotations

from devtools.hubspot import FakeHubSpot

__all__ = ["FakeHubSpot"]
