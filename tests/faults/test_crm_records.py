"""The CRM refuses 1% of the records inside otherwise applied batches (`results` of a 2xx, as
HubSpot's traced 207 answers do): exactly those become dead letters, every other record is
delivered. And a CRM trickling its answers for longer than a batch's lease never has one
customer in two unanswered batches."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import (
    CUSTOMERS,
    MAX_IN_FLIGHT,
    FaultEnv,
    Run,
    assert_clean,
    run_scenario,
)

pytestmark = pytest.mark.integration

REFUSED = frozenset(f"CUST{n:06d}" for n in range(0, CUSTOMERS, 100))  # 1%


def refuse_one_percent(run: Run) -> None:
    run.notes["customers refused"] = len(REFUSED)


def test_records_refused_one_by_one_are_exactly_the_dead_letters(fault_env: FaultEnv) -> None:
    report, run = run_scenario(fault_env, "crm_refuses_records", "CRM refuses 1% of records",
                               refuse_one_percent, refused=REFUSED)  # fmt: skip
    assert_clean(report, run)  # the dead letters are the refused customers' operations


TRICKLE_SECONDS = 10.0  # past DELIVERY_LEASE_SECONDS (8) and the send's deadline (3)


def trickle_then_answer(run: Run) -> None:
    crm = run.env.crm
    # Every batch sent while the CRM trickles loses its answer to the deadline (3 s): over the
    # window, each of the batches in flight, again after each pause.
    run.answers_lost = 4 * MAX_IN_FLIGHT
    run.sender.wait_until_settled(0.2)
    crm.trickle(TRICKLE_SECONDS)
    time.sleep(TRICKLE_SECONDS + 2)
    crm.trickle(0)
    run.healed()
    run.notes["CRM trickled s"] = TRICKLE_SECONDS


def test_a_crm_trickling_past_the_lease_never_gets_a_customer_twice(fault_env: FaultEnv) -> None:
    report, run = run_scenario(fault_env, "crm_trickles", "CRM trickles answers past the lease",
                               trickle_then_answer)  # fmt: skip
    assert_clean(report, run)  # the fake CRM records any overlap as a violation
