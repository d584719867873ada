"""The fake CRM: receives the `http` destination's signed batches over real HTTP.

One fake for the tests (it checks every guarantee of the contract), the benches (`counting`
mode, or its own process: `python -m devtools.crm`) and the demo (which draws what it holds).
"""

from devtools.crm.checks import signature
from devtools.crm.server import FakeCrm, OrgCounts

__all__ = ["FakeCrm", "OrgCounts", "signature"]
