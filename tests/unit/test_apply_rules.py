"""The ordering rules: whatever the order, batching and duplication of the same events, the
mirror ends in the same state, and that state is the newest one LOKE described."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from app.core.services import Services
from app.factory import create_app
from app.ingest import inbox
from app.ingest.apply import drain_inbox
from app.mirror.keys import PARTIAL_PROFILE
from app.store.migrate import upgrade
from app.store.models import (
    Customer,
    DeadLetter,
    DeliveryState,
    InboxEvent,
    Organization,
    OutboxEntry,
    Payment,
)
from tests.conftest import RecordingDispatcher, make_settings, services_of
from tests.support import iso
from tests.support.fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    statistics_event,
    tiny,
)

ORG = "org-rules"
BASE = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ZONES = (
    dt.UTC,
    dt.timezone(dt.timedelta(hours=10)),
    dt.timezone(dt.timedelta(hours=-5, minutes=-30)),
)
CUSTOMER_IDS = ("01HCUST0001", "01HCUST0002", "01HCUST0003")
PAYMENT_IDS = ("pay-0001", "pay-0002", "pay-0003")
SHARED_EMAIL = "family@example.com"
STAT_TIMES = (  # (new spelling, LOKE add-on spelling)
    ("lastPointsEarnedAt", "lastPointsEarned"),
    ("lastPointsRedeemedAt", "lastPointsRedeemed"),
    ("lastSpentAt", "lastSpend"),
)
CustomerState = tuple[dict[str, Any], int, dict[str, Any] | None]
PaymentState = tuple[str, str | None, dict[str, Any]]


# -- the worlds: two databases, emptied between examples ----------------------------------------
@dataclass
class World:
    apps: list[Flask]

    @property
    def services(self) -> list[Services]:
        return [services_of(a) for a in self.apps]


def connect_org(services: Services) -> None:
    """An organization row as PUT /api/orgs leaves it (the rules only need it connected)."""
    now = dt.datetime.now(dt.UTC)
    with services.db.transaction() as session:
        session.add(
            Organization(
                id=ORG,
                connected=True,
                webhook_secret_enc=services.box.encrypt("webhook-secret-for-rules"),
                destination={},
                lists=[],
                created_at=now,
                updated_at=now,
            )
        )


def reset(services: Services) -> None:
    with services.db.transaction() as session:
        for model in (Customer, Payment, OutboxEntry, InboxEvent, DeadLetter, DeliveryState):
            session.execute(delete(model))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with FakeLoke("unused", "unused") as loke:
        apps = []
        for name in ("first", "second"):
            settings = make_settings(Path(tmp_path_factory.mktemp(name)), loke)
            upgrade(settings.sqlalchemy_url)
            flask_app = create_app(settings, RecordingDispatcher())
            connect_org(services_of(flask_app))
            apps.append(flask_app)
        yield World(apps)
        for flask_app in apps:
            services_of(flask_app).db.dispose()


@pytest.fixture
def services(world: World) -> Services:
    first = world.services[0]
    reset(first)
    return first


# -- applying through the real path: the inbox, then the drain ----------------------------------
def serialized(body: dict[str, Any], copy: int) -> bytes:
    """The same event as LOKE may redeliver it: another byte string, so not an inbox duplicate."""
    if copy == 0:
        return json.dumps(body, separators=(",", ":")).encode()
    return json.dumps({**body, "redelivery": copy}, indent=copy % 3).encode()


def deliver(services: Services, batches: Sequence[Sequence[bytes]]) -> None:
    """Store each batch in the inbox, then drain it: one drain applies one batch."""
    for batch in batches:
        for body in batch:
            inbox.store(services.db, ORG, json.loads(body)["event"], body, "test")
        result = drain_inbox(services)
        assert result.failed == 0
        assert not result.more


def apply(services: Services, *bodies: dict[str, Any], copy: int = 0) -> None:
    deliver(services, [[serialized(body, copy) for body in bodies]])


@dataclass(frozen=True)
class Mirror:
    customers: dict[str, CustomerState]
    payments: dict[str, PaymentState]
    outbox: dict[tuple[str, str], int]


def mirror_of(services: Services) -> Mirror:
    with services.db.transaction() as session:
        customers = {
            c.id: (c.profile, c.profile_version, c.statistics)
            for c in session.scalars(select(Customer).where(Customer.org_id == ORG))
        }
        payments = {
            p.id: (p.status, p.customer_id, p.record)
            for p in session.scalars(select(Payment).where(Payment.org_id == ORG))
        }
        outbox = {
            (o.kind, o.key): o.seq
            for o in session.scalars(select(OutboxEntry).where(OutboxEntry.org_id == ORG))
        }
    return Mirror(customers, payments, outbox)


def micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def render(moment: dt.datetime, zone: int) -> str:
    """A LOKE timestamp with an offset: ordering must follow the instant, not the text."""
    return moment.astimezone(ZONES[zone]).isoformat(timespec="milliseconds")


# -- the generated events and the state they must lead to ---------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """One customer's statistics at some moment, sent in either spelling."""

    times: tuple[int | None, int | None, int | None]  # minutes after BASE, per last...At
    earned: int
    redeemed: int
    spend: int
    old_spelling: bool
    zone: int

    def moment(self, index: int) -> dt.datetime | None:
        minutes = self.times[index]
        return None if minutes is None else BASE + dt.timedelta(minutes=minutes)

    def body(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "pointsBalance": self.earned - self.redeemed,
            "totalPointsEarned": self.earned,
            "totalPointsRedeemed": self.redeemed,
            "totalSpend": self.spend,
        }
        for index, names in enumerate(STAT_TIMES):
            moment = self.moment(index)
            fields[names[self.old_spelling]] = None if moment is None else render(moment, self.zone)
        return fields

    def stored(self) -> dict[str, Any]:
        """As the mirror keeps and the CRM receives it: new spelling, UTC."""
        fields = {k: v for k, v in self.body().items() if k.startswith(("points", "total"))}
        for index, (name, _) in enumerate(STAT_TIMES):
            moment = self.moment(index)
            fields[name] = None if moment is None else iso(moment)
        return fields

    def order(self) -> tuple[int, int]:
        moments = [m for m in (self.moment(i) for i in range(3)) if m is not None]
        return (max((micros(m) for m in moments), default=0), self.earned + self.redeemed)


@dataclass(frozen=True)
class Profile:
    customer_id: str
    kind: str
    minutes: int  # updatedAt, minutes after BASE; distinct per customer
    email: str
    first_name: str
    statistics: Snapshot | None
    zone: int

    @property
    def updated_at(self) -> dt.datetime:
        return BASE + dt.timedelta(minutes=self.minutes)

    def body(self) -> dict[str, Any]:
        customer = make_customer(
            self.customer_id, self.updated_at, email=self.email, firstName=self.first_name
        )
        customer["updatedAt"] = render(self.updated_at, self.zone)
        customer["createdAt"] = "2025-01-01T00:00:00.000Z"
        customer["statistics"] = self.statistics.body() if self.statistics else None
        return customer_event(self.kind, ORG, customer)

    def stored(self) -> dict[str, Any]:
        base = make_customer(self.customer_id, self.updated_at)
        return {
            "email": self.email,
            "firstName": self.first_name,
            "lastName": base["lastName"],
            "phoneNumber": base["phoneNumber"],
            "dob": "1990-01-31",
            "gender": "female",
            "hasAgreedToMarketing": True,
            "createdAt": "2025-01-01T00:00:00.000Z",
            "updatedAt": iso(self.updated_at),
        }


@dataclass(frozen=True)
class PaymentHistory:
    payment_id: str
    customer_id: str | None
    total: int
    completed_minutes: int
    refunded_after: int | None  # minutes after completion, if it was refunded

    def payment(self, refunded: bool) -> dict[str, Any]:
        completed = BASE + dt.timedelta(minutes=self.completed_minutes)
        customer = None if self.customer_id is None else base_tiny(self.customer_id)
        overrides: dict[str, Any] = {"total": self.total, "chargedAmount": self.total}
        if refunded:
            assert self.refunded_after is not None
            refunded_at = completed + dt.timedelta(minutes=self.refunded_after)
            overrides |= {"refundedAt": refunded_at, "state": "refunded"}
        return make_payment(self.payment_id, customer, completed, **overrides)

    def bodies(self) -> list[dict[str, Any]]:
        found = [payment_event("completed", ORG, self.payment(refunded=False))]
        if self.refunded_after is not None:
            found.append(payment_event("refunded", ORG, self.payment(refunded=True)))
        return found

    def stored(self) -> PaymentState:
        refunded = self.refunded_after is not None
        payment = self.payment(refunded)
        record = {
            "paymentId": self.payment_id,
            "customerId": self.customer_id,
            "status": "refunded" if refunded else "completed",
            "total": self.total,
            "currency": "AUD",
            "completedAt": payment["completedAt"],
            "refundedAt": payment["refundedAt"],
            "locationId": "loc-1",
            "items": [{"id": "item-1", "name": "Flat white", "quantity": 1, "amount": 1250}],
        }
        return (record["status"], self.customer_id, record)


def base_tiny(customer_id: str) -> dict[str, Any]:
    """What statistics and payment events say about a customer (the same every time)."""
    return tiny(make_customer(customer_id, BASE))


def partial_profile(customer_id: str) -> dict[str, Any]:
    known = base_tiny(customer_id)
    return {k: known[k] for k in ("email", "firstName", "lastName", "phoneNumber")} | dict.fromkeys(
        ("dob", "gender", "hasAgreedToMarketing", "createdAt", "updatedAt")
    )


@dataclass(frozen=True)
class Scenario:
    profiles: list[Profile]
    statistics: list[tuple[str, Snapshot]]
    payments: list[PaymentHistory]

    def bodies(self) -> list[dict[str, Any]]:
        found = [p.body() for p in self.profiles]
        found += [statistics_event(ORG, base_tiny(c), s.body()) for c, s in self.statistics]
        for payment in self.payments:
            found += payment.bodies()
        return found

    def customer_ids(self) -> set[str]:
        ids = {p.customer_id for p in self.profiles} | {c for c, _ in self.statistics}
        return ids | {p.customer_id for p in self.payments if p.customer_id is not None}


snapshots = st.builds(
    Snapshot,
    times=st.tuples(*[st.none() | st.integers(0, 4)] * 3),
    earned=st.integers(0, 3),
    redeemed=st.integers(0, 2),
    spend=st.sampled_from([0, 100, 250]),
    old_spelling=st.booleans(),
    zone=st.integers(0, len(ZONES) - 1),
)


@st.composite
def profiles_of(draw: st.DrawFn, customer_id: str) -> list[Profile]:
    minutes = draw(st.lists(st.integers(0, 60), unique=True, max_size=3))
    return [
        Profile(
            customer_id,
            draw(st.sampled_from(["customer.created", "customer.updated"])),
            m,
            draw(st.sampled_from([SHARED_EMAIL, f"{customer_id.lower()}@example.com"])),
            draw(st.sampled_from(["Ana", "Bo", "Cy"])),
            draw(st.none() | snapshots),
            draw(st.integers(0, len(ZONES) - 1)),
        )
        for m in minutes
    ]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    customers = draw(st.lists(st.sampled_from(CUSTOMER_IDS), min_size=1, max_size=3, unique=True))
    profiles = [p for c in customers for p in draw(profiles_of(c))]
    statistics = draw(st.lists(st.tuples(st.sampled_from(customers), snapshots), max_size=5))
    payments = [
        PaymentHistory(
            payment_id,
            draw(st.sampled_from([*customers, None])),
            draw(st.integers(1, 5000)),
            draw(st.integers(0, 60)),
            draw(st.none() | st.integers(1, 30)),
        )
        for payment_id in draw(st.lists(st.sampled_from(PAYMENT_IDS), max_size=2, unique=True))
    ]
    return Scenario(profiles, statistics, payments)


@st.composite
def deliveries(draw: st.DrawFn, bodies: list[dict[str, Any]]) -> list[list[bytes]]:
    """Every body at least once, some twice or thrice, in any order, cut into batches."""
    copies = [
        serialized(body, copy)
        for body in bodies
        for copy in range(draw(st.integers(1, 3)))
    ]  # fmt: skip
    shuffled = draw(st.permutations(copies))
    batches: list[list[bytes]] = []
    while shuffled:
        size = draw(st.integers(1, max(1, len(shuffled))))
        batches.append(shuffled[:size])
        shuffled = shuffled[size:]
    return batches


def assert_is_the_newest_state(mirror: Mirror, scenario: Scenario) -> None:
    assert set(mirror.customers) == scenario.customer_ids()
    for customer_id, (profile, version, statistics) in mirror.customers.items():
        profiles = [p for p in scenario.profiles if p.customer_id == customer_id]
        if profiles:
            newest = max(profiles, key=lambda p: p.minutes)
            assert (profile, version) == (newest.stored(), micros(newest.updated_at))
        else:
            assert (profile, version) == (partial_profile(customer_id), PARTIAL_PROFILE)
        sent = [s for c, s in scenario.statistics if c == customer_id]
        sent += [p.statistics for p in profiles if p.statistics is not None]
        if not sent:
            assert statistics is None
            continue
        top = max(s.order() for s in sent)
        # Equal activity and counters: any of them may win, but both orders must pick the same.
        assert statistics in [s.stored() for s in sent if s.order() == top]
    assert mirror.payments == {p.payment_id: p.stored() for p in scenario.payments}


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios(), data=st.data())
def test_any_order_and_batching_of_the_same_events_ends_in_the_same_newest_state(
    world: World, scenario: Scenario, data: st.DataObject
) -> None:
    bodies = scenario.bodies()
    mirrors = []
    for services in world.services:
        reset(services)
        deliver(services, data.draw(deliveries(bodies)))
        mirrors.append(mirror_of(services))
    first, second = mirrors
    assert first.customers == second.customers
    assert first.payments == second.payments
    assert_is_the_newest_state(first, scenario)

    # Everything again, redelivered: nothing really changes, so nothing is marked for the CRM.
    services = world.services[0]
    deliver(services, [[serialized(body, 7) for body in reversed(bodies)]])
    assert mirror_of(services) == first


def test_the_outbox_holds_every_delivered_entity_and_no_guest_payment(services: Services) -> None:
    guest = PaymentHistory("pay-guest", None, 900, 1, None)
    known = PaymentHistory("pay-known", CUSTOMER_IDS[0], 900, 1, 5)
    for body in [*guest.bodies(), *known.bodies()]:
        apply(services, body)
    mirror = mirror_of(services)
    assert set(mirror.payments) == {"pay-guest", "pay-known"}
    assert set(mirror.outbox) == {("contact", CUSTOMER_IDS[0]), ("payment", "pay-known")}


def test_a_payment_is_applied_without_any_warning(app: Flask) -> None:
    """Tests run with warnings as errors: a deprecated call in the apply path would fail here."""
    services = services_of(app)
    connect_org(services)
    apply(services, *PaymentHistory("pay-warn", CUSTOMER_IDS[0], 100, 0, None).bodies())
    assert set(mirror_of(services).payments) == {"pay-warn"}


# -- single rules, spelled out ------------------------------------------------------------------
def profile(minutes: int, customer_id: str = CUSTOMER_IDS[0], **changes: Any) -> Profile:
    fields: dict[str, Any] = {"email": "a@example.com", "first_name": "Ana"} | changes
    return Profile(customer_id, "customer.updated", minutes, statistics=None, zone=0, **fields)


def test_a_profile_with_an_equal_updated_at_is_a_no_op(services: Services) -> None:
    first = profile(10, email="first@example.com")
    apply(services, first.body())
    before = mirror_of(services)
    apply(services, profile(10, email="second@example.com", first_name="Bo").body())
    after = mirror_of(services)
    assert after == before
    assert after.customers[CUSTOMER_IDS[0]][0]["email"] == "first@example.com"


def test_an_equal_updated_at_in_another_offset_is_the_same_instant_and_a_no_op(
    services: Services,
) -> None:
    apply(services, profile(10, email="first@example.com").body())
    before = mirror_of(services)
    same_instant = Profile(CUSTOMER_IDS[0], "customer.updated", 10, "x@example.com", "Cy", None, 1)
    assert same_instant.body()["customer"]["updatedAt"].endswith("+10:00")
    apply(services, same_instant.body())
    assert mirror_of(services) == before


def test_an_older_profile_arriving_late_changes_nothing(services: Services) -> None:
    apply(services, profile(20, email="new@example.com").body())
    before = mirror_of(services)
    apply(services, profile(19, email="old@example.com").body())
    assert mirror_of(services) == before
    apply(services, profile(21, email="newer@example.com").body())
    assert mirror_of(services).customers[CUSTOMER_IDS[0]][0]["email"] == "newer@example.com"


def test_two_customers_with_the_same_email_are_two_customers(services: Services) -> None:
    apply(
        services,
        profile(1, CUSTOMER_IDS[0], email=SHARED_EMAIL).body(),
        profile(1, CUSTOMER_IDS[1], email=SHARED_EMAIL, first_name="Bo").body(),
    )
    customers = mirror_of(services).customers
    assert set(customers) == {CUSTOMER_IDS[0], CUSTOMER_IDS[1]}
    assert [customers[c][0]["firstName"] for c in CUSTOMER_IDS[:2]] == ["Ana", "Bo"]


def test_a_changed_email_on_the_same_id_updates_one_customer(services: Services) -> None:
    apply(services, profile(1, email="before@example.com").body())
    apply(services, profile(2, email="after@example.com").body())
    customers = mirror_of(services).customers
    assert list(customers) == [CUSTOMER_IDS[0]]
    assert customers[CUSTOMER_IDS[0]][0]["email"] == "after@example.com"


def test_reapplying_the_same_event_leaves_the_outbox_seq_unchanged(services: Services) -> None:
    body = profile(5).body()
    apply(services, body)
    key = ("contact", CUSTOMER_IDS[0])
    assert mirror_of(services).outbox == {key: 1}
    for copy in (1, 2):
        apply(services, body, copy=copy)
        assert mirror_of(services).outbox == {key: 1}
    apply(services, profile(6).body())
    assert mirror_of(services).outbox == {key: 2}


def test_a_late_completed_after_refunded_leaves_the_payment_refunded(services: Services) -> None:
    history = PaymentHistory("pay-late", CUSTOMER_IDS[0], 1250, 0, 10)
    completed, refunded = history.bodies()
    apply(services, completed)
    apply(services, refunded)
    before = mirror_of(services)
    apply(services, completed, copy=1)
    after = mirror_of(services)
    assert after.payments["pay-late"][0] == "refunded"
    assert after == before


def test_both_spellings_of_the_statistics_times_are_ordered_alike(services: Services) -> None:
    newer = Snapshot((None, None, 3), 2, 0, 100, old_spelling=True, zone=1)  # lastSpend
    older = Snapshot((2, None, None), 9, 0, 100, old_spelling=False, zone=0)
    tiny_customer = base_tiny(CUSTOMER_IDS[0])
    apply(services, statistics_event(ORG, tiny_customer, newer.body()))
    apply(services, statistics_event(ORG, tiny_customer, older.body()))
    statistics = mirror_of(services).customers[CUSTOMER_IDS[0]][2]
    assert statistics == newer.stored()
    assert statistics is not None
    assert statistics["lastSpentAt"] == iso(BASE + dt.timedelta(minutes=3))


def test_equal_activity_times_are_ordered_by_the_points_counters(services: Services) -> None:
    more = Snapshot((4, 4, None), 3, 2, 100, old_spelling=False, zone=0)
    fewer = Snapshot((4, None, 1), 3, 1, 999, old_spelling=True, zone=2)
    tiny_customer = base_tiny(CUSTOMER_IDS[0])
    apply(services, statistics_event(ORG, tiny_customer, more.body()))
    apply(services, statistics_event(ORG, tiny_customer, fewer.body()))
    assert mirror_of(services).customers[CUSTOMER_IDS[0]][2] == more.stored()


def test_a_real_profile_beats_a_partial_one_even_with_an_updated_at_before_1970(
    services: Services,
) -> None:
    partial = PaymentHistory("pay-early", CUSTOMER_IDS[0], 100, 0, None).bodies()
    apply(services, *partial)
    assert mirror_of(services).customers[CUSTOMER_IDS[0]][1] == PARTIAL_PROFILE
    ancient = make_customer(CUSTOMER_IDS[0], dt.datetime(1969, 7, 20, tzinfo=dt.UTC))
    apply(services, customer_event("customer.updated", ORG, ancient))
    profile_now, version = mirror_of(services).customers[CUSTOMER_IDS[0]][:2]
    assert version < 0 < version - PARTIAL_PROFILE
    assert profile_now["updatedAt"] == "1969-07-20T00:00:00.000Z"
