"""Every test under tests/integration/ carries the `integration` marker, so that
`-m "not integration"` runs without PostgreSQL, Redis and worker processes."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT


def test_no_integration_test_is_left_unmarked() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", "not integration", "tests/integration"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert answer.returncode == 5, answer.stdout + answer.stderr  # 5: no test collected
    assert "no tests collected (" in answer.stdout
    assert " deselected)" in answer.stdout
