"""The fake HubSpot keeps the wire contract it shares with the HubSpot destination, over real
HTTP: each test would fail if the fake let the rule it checks slide."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devtools.httpserver import Request, Response
from tests.support.fake_hubspot import FakeHubSpot

pytestmark = pytest.mark.timeout(30)

V = "2026-03"
TOKEN = "test-token"
CONTACTS = f"/crm/objects/{V}/contacts/batch"


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    """A started fake with the default token; it must not have crashed by the end."""
    with FakeHubSpot() as fake:
        yield fake
    assert fake.server_errors == []


def call(
    fake: FakeHubSpot, method: str, path: str, body: Any = None, token: str | None = TOKEN,
    **params: str,
) -> requests.Response:  # fmt: skip
    """One request to the fake, with the token as a Bearer unless it is None."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, fake.url + path, json=body, headers=headers, params=params,
                            timeout=5)  # fmt: skip


def prop(fake: FakeHubSpot, name: str, kind: str = "string", field: str = "text",
         unique: bool = False, obj: str = "contacts") -> requests.Response:  # fmt: skip
    """Create a property in the object's default group."""
    group = {"contacts": "contactinformation", "orders": "orderinformation",
             "line_items": "line_item_information"}[obj]  # fmt: skip
    body = {"name": name, "label": name, "type": kind, "fieldType": field, "groupName": group,
            "hasUniqueValue": unique}  # fmt: skip
    return call(fake, "POST", f"/crm/properties/{V}/{obj}", body)


def upsert(fake: FakeHubSpot, rows: list[dict[str, Any]], traced: bool = True,
           obj: str = "contacts", key: str = "loke_customer_id") -> requests.Response:  # fmt: skip
    """Upsert rows keyed by `rows[i][key]`; traced with trace ids `t<i>`."""
    inputs = [{"id": row[key], "idProperty": key, "properties": row} for row in rows]
    for i, item in enumerate(inputs):
        if traced:
            item["objectWriteTraceId"] = f"t{i}"
    return call(fake, "POST", f"/crm/objects/{V}/{obj}/batch/upsert", {"inputs": inputs})


@pytest.fixture
def keyed(hubspot: FakeHubSpot) -> FakeHubSpot:
    """A fake whose contacts have the unique `loke_customer_id`."""
    assert prop(hubspot, "loke_customer_id", unique=True).status_code == 201
    return hubspot


def test_a_token_must_be_known_not_revoked_and_scoped(hubspot: FakeHubSpot) -> None:
    details = f"/account-info/{V}/details"
    for token in (None, "nope"):
        refused = call(hubspot, "GET", details, token=token)
        assert refused.status_code == 401
        assert refused.json()["category"] == "INVALID_AUTHENTICATION"
        assert refused.json()["message"].startswith("Authentication credentials not found.")
    assert call(hubspot, "GET", details).json()["portalId"] == hubspot.portal_id()
    hubspot.revoke("test-token")
    assert call(hubspot, "GET", details).status_code == 401
    hubspot.restore("test-token")
    assert call(hubspot, "GET", details).status_code == 200
    hubspot.restrict("test-token")
    assert call(hubspot, "GET", details).json()["category"] == "MISSING_SCOPES"
    assert hubspot.requests.unauthorized == 3


def test_each_account_has_its_own_portal_id_and_records() -> None:
    with FakeHubSpot({"a": "one", "b": "two"}) as fake:
        seeded = fake.seed_contact({"email": "x@y.com"}, account="one")
        ids = {t: call(fake, "GET", "/account-info/v3/details", token=t).json()["portalId"]
               for t in "ab"}  # fmt: skip
        read = call(fake, "POST", f"{CONTACTS}/read", {"inputs": [{"id": seeded}]}, token="b")
    assert ids["a"] != ids["b"]
    assert read.status_code == 207


def test_groups_and_properties_are_created_once_and_patched(hubspot: FakeHubSpot) -> None:
    groups = f"/crm/properties/{V}/contacts/groups"
    group = {"name": "loke", "label": "LOKE", "displayOrder": 1}
    assert call(hubspot, "POST", groups, group).status_code == 201
    again = call(hubspot, "POST", groups, group)
    assert (again.status_code, again.json()["category"]) == (409, "OBJECT_ALREADY_EXISTS")
    assert call(hubspot, "GET", f"{groups}/loke").json()["label"] == "LOKE"
    body = {"name": "loke_points", "label": "Points", "type": "number", "fieldType": "number",
            "groupName": "loke"}  # fmt: skip
    path = f"/crm/properties/{V}/0-1"
    assert call(hubspot, "POST", path, body).status_code == 201
    exists = call(hubspot, "POST", path, body).json()
    assert exists["subCategory"] == "PROPERTY_WITH_NAME_EXISTS"
    assert call(hubspot, "POST", path, {**body, "name": "a", "groupName": "x"}).status_code == 400
    assert (
        call(hubspot, "POST", path, {**body, "name": "b", "fieldType": "text"}).status_code == 400
    )
    assert call(hubspot, "PATCH", f"{path}/loke_points", {"label": "Pts"}).status_code == 200
    assert call(hubspot, "GET", f"{path}/loke_points").json()["label"] == "Pts"
    assert (
        call(hubspot, "PATCH", f"{path}/loke_points", {"hasUniqueValue": True}).status_code == 400
    )
    assert call(hubspot, "GET", f"{path}/nope").json()["category"] == "OBJECT_NOT_FOUND"
    names = {p["name"] for p in call(hubspot, "GET", path).json()["results"]}
    assert {"email", "hs_additional_emails", "loke_points"} <= names
    assert all(prop(hubspot, f"u{i}", unique=True).status_code == 201 for i in range(10))
    assert prop(hubspot, "u10", unique=True).status_code == 400  # ten unique at most


def test_upsert_creates_then_updates_by_the_unique_property(keyed: FakeHubSpot) -> None:
    first = upsert(keyed, [{"loke_customer_id": "c1", "firstname": "Ann"}]).json()["results"][0]
    second = upsert(keyed, [{"loke_customer_id": "c1", "lastname": "Lee"}]).json()["results"][0]
    assert (first["new"], second["new"], second["id"]) == (True, False, first["id"])
    assert second["properties"]["firstname"] == "Ann"
    assert second["properties"]["hs_object_id"] == first["id"]
    held = keyed.contact_by("loke_customer_id", "c1")
    assert held == {"id": first["id"], "properties": second["properties"]}
    assert upsert(keyed, [{"firstname": "Bo"}], key="firstname").status_code == 400


def test_a_traced_batch_applies_good_inputs_and_reports_each_bad_one(keyed: FakeHubSpot) -> None:
    prop(keyed, "points", "number", "number")
    prop(keyed, "birthday", "date", "date")
    prop(keyed, "seen_at", "datetime", "date")
    prop(keyed, "opted_in", "bool", "booleancheckbox")
    rows: list[dict[str, Any]] = [
        {"points": "12.5", "birthday": "1990-02-03", "seen_at": "2026-01-02T03:04:05Z"},
        {"points": "12a"},
        {"birthday": "1700000000000"},  # epoch ms, not midnight
        {"opted_in": "yes"},
        {"points": " 5"},
        {"email": "not an@email.com"},
        {"loyalty": "gold"},
        {"opted_in": "true", "birthday": "1704067200000", "email": "Bo@x.com"},
        {"points": 5},
    ]
    answer = upsert(keyed, [{**r, "loke_customer_id": f"c{i}"} for i, r in enumerate(rows)])
    assert answer.status_code == 207
    body = answer.json()
    codes = {e["context"]["objectWriteTraceId"][0]: [x["code"] for x in e["errors"]]
             for e in body["errors"]}  # fmt: skip
    assert codes == {"t1": ["INVALID_INTEGER"], "t2": ["INVALID_DATE"], "t3": ["INVALID_BOOLEAN"],
                     "t4": ["LEADING_TRAILING_WHITESPACE"], "t5": ["INVALID_EMAIL"],
                     "t6": ["PROPERTY_DOESNT_EXIST"], "t8": ["INVALID_TYPE"]}  # fmt: skip
    assert body["numErrors"] == 7
    first = body["errors"][0]
    assert first["category"] == "VALIDATION_ERROR"
    detail = json.loads(first["message"].removeprefix("Property values were not valid: "))
    assert detail[0]["isValid"] is False
    assert sorted(r["objectWriteTraceId"] for r in body["results"]) == ["t0", "t7"]
    assert sorted(c["properties"]["loke_customer_id"] for c in keyed.contacts()) == ["c0", "c7"]


def test_an_untraced_batch_fails_whole_and_applies_nothing(keyed: FakeHubSpot) -> None:
    answer = upsert(keyed, [{"loke_customer_id": "c1"}, {"loke_customer_id": "c2", "x": "1"}],
                    traced=False)  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"
    assert answer.json()["message"].startswith("Property values were not valid: ")
    assert keyed.contacts() == []


def test_an_email_another_contact_holds_is_a_conflict(keyed: FakeHubSpot) -> None:
    held = keyed.seed_contact({"email": "Ann@X.com"})
    other = keyed.seed_contact({"email": "b@x.com", "hs_additional_emails": "old@x.com"})
    rows = [{"loke_customer_id": "c1", "email": "ann@x.com"},
            {"loke_customer_id": "c2", "email": "OLD@x.com"}]  # fmt: skip
    errors = upsert(keyed, rows).json()["errors"]
    existing = {e["context"]["objectWriteTraceId"][0]: e["context"]["existingId"] for e in errors}
    assert existing == {"t0": [held], "t1": [other]}
    assert {e["category"] for e in errors} == {"CONFLICT"}
    whole = upsert(keyed, rows[:1], traced=False)
    assert whole.status_code == 409
    assert whole.json()["message"] == f"Contact already exists. Existing ID: {held}"
    assert len(keyed.contacts()) == 2


def test_two_inputs_with_one_id_or_email_fail_the_whole_batch(keyed: FakeHubSpot) -> None:
    same_id = [{"loke_customer_id": "c1"}, {"loke_customer_id": "c1"}]
    same_email = [{"loke_customer_id": "c1", "email": "a@x.com"},
                  {"loke_customer_id": "c2", "email": "A@X.com"}]  # fmt: skip
    for rows in (same_id, same_email):
        answer = upsert(keyed, rows)
        assert answer.status_code == 400
        assert answer.json()["message"] == "Duplicate IDs found in batch input"
    assert keyed.contacts() == []


def test_results_come_out_of_order_but_echo_their_trace_ids(keyed: FakeHubSpot) -> None:
    rows = [{"loke_customer_id": f"c{i}"} for i in range(10)]
    results = upsert(keyed, rows).json()["results"]
    order = [r["properties"]["loke_customer_id"] for r in results]
    assert order != [row["loke_customer_id"] for row in rows]
    assert all(r["properties"]["loke_customer_id"] == "c" + r["objectWriteTraceId"][1:]
               for r in results)  # fmt: skip


def test_a_batch_read_by_id_property_names_the_missing(keyed: FakeHubSpot) -> None:
    made = keyed.seed_contact({"loke_customer_id": "c1", "email": "a@x.com", "phone": "1"})
    body = {"idProperty": "loke_customer_id", "properties": ["email"],
            "inputs": [{"id": "c1"}, {"id": "nope"}]}  # fmt: skip
    answer = call(keyed, "POST", f"{CONTACTS}/read", body)
    assert answer.status_code == 207
    assert answer.json()["results"][0]["properties"] == {"email": "a@x.com", "hs_object_id": made}
    [error] = answer.json()["errors"]
    assert (error["category"], error["context"]["ids"]) == ("OBJECT_NOT_FOUND", ["nope"])
    assert error["message"].startswith("Could not get some CONTACT objects")


def test_a_merged_contact_resolves_by_old_id_but_old_ids_leave_lists(hubspot: FakeHubSpot) -> None:
    a = hubspot.seed_contact({"email": "a@x.com"})
    b = hubspot.seed_contact({"email": "b@x.com"})
    made = call(hubspot, "POST", "/crm/v3/lists", {"name": "VIP", "objectTypeId": "0-1",
                                                   "processingType": "MANUAL"})  # fmt: skip
    list_id = made.json()["list"]["listId"]
    call(hubspot, "PUT", f"/crm/v3/lists/{list_id}/memberships/add", [a, int(b)])
    merged = hubspot.merge(a, b)
    assert hubspot.members(list_id) == {merged}
    read = call(hubspot, "POST", f"{CONTACTS}/read", {"inputs": [{"id": a}], "properties": []})
    assert read.json()["results"][0]["id"] == merged
    contact = hubspot.contact_by("email", "a@x.com")
    assert contact is not None
    assert contact["properties"]["hs_merged_object_ids"] == f"{a};{b}"
    added = call(hubspot, "PUT", f"/crm/v3/lists/{list_id}/memberships/add", [a])
    assert added.json() == {"recordsIdsAdded": [], "recordIdsMissing": [a]}


def test_orders_and_line_items_upsert_and_associate_both_ways(hubspot: FakeHubSpot) -> None:
    prop(hubspot, "loke_payment_id", unique=True, obj="orders")
    prop(hubspot, "loke_line_item_id", unique=True, obj="line_items")
    contact = hubspot.seed_contact({"email": "a@x.com"})
    order = upsert(hubspot, [{"loke_payment_id": "p1", "hs_total_price": "9.50"}], obj="orders",
                   key="loke_payment_id").json()["results"][0]["id"]  # fmt: skip
    item = upsert(hubspot, [{"loke_line_item_id": "l1", "quantity": "2"}], obj="0-8",
                  key="loke_line_item_id").json()["results"][0]["id"]  # fmt: skip
    assert hubspot.orders()[0]["properties"]["loke_payment_id"] == "p1"
    link = "/crm/associations/v4/orders/contacts/batch/associate/default"
    done = call(hubspot, "POST", link, {"inputs": [{"from": {"id": order}, "to": {"id": contact}}]})
    assert done.json()["results"][0]["associationSpec"][0]["associationTypeId"] == 507
    line = f"/crm/associations/{V}/line_items/orders/batch/associate/default"
    call(hubspot, "PUT", line, {"inputs": [{"from": {"id": item}, "to": {"id": order}}]})
    assert hubspot.associations("orders", "line_items") == {(order, item)}
    read = call(hubspot, "POST", "/crm/associations/v4/0-1/0-123/batch/read",
                {"inputs": [{"id": contact}]}).json()["results"]  # fmt: skip
    kind = {"category": "HUBSPOT_DEFINED", "typeId": 508, "label": None}
    to = [{"toObjectId": int(order), "associationTypes": [kind]}]
    assert read == [{"from": {"id": contact}, "to": to}]
    unknown = call(hubspot, "POST", link, {"inputs": [{"from": {"id": order}, "to": {"id": "9"}}]})
    assert (unknown.status_code, unknown.json()["errors"][0]["context"]["ids"]) == (207, ["9"])
    archive = "/crm/associations/v4/contacts/orders/batch/archive"
    body = {"inputs": [{"from": {"id": contact}, "to": [{"id": order}]}]}
    assert call(hubspot, "POST", archive, body).status_code == 204
    assert hubspot.associations("orders", "contacts") == set()


def test_lists_are_named_once_renamed_changed_and_paged(hubspot: FakeHubSpot) -> None:
    base = f"/crm/lists/{V}"
    ids = [hubspot.seed_contact({"email": f"{i}@x.com"}) for i in range(5)]
    body = {"name": "VIP members", "objectTypeId": "0-1", "processingType": "MANUAL"}
    made = call(hubspot, "POST", base, body)
    assert made.status_code == 200
    list_id = made.json()["list"]["listId"]
    taken = call(hubspot, "POST", "/crm/v3/lists", {**body, "name": "vip MEMBERS"}).json()
    assert taken["subCategory"] == "ILS.DUPLICATE_LIST_NAMES"
    found = call(hubspot, "GET", f"{base}/object-type-id/0-1/name/VIP%20members").json()
    assert found["list"]["listId"] == list_id
    renamed = call(hubspot, "PUT", f"{base}/{list_id}/update-list-name", listName="Gold")
    assert renamed.json()["updatedList"]["name"] == "Gold"
    assert hubspot.lists() == {"Gold": list_id}
    added = call(hubspot, "PUT", f"{base}/{list_id}/memberships/add", [*ids[:4], "999"]).json()
    assert added == {"recordsIdsAdded": ids[:4], "recordIdsMissing": ["999"]}
    again = call(hubspot, "PUT", f"{base}/{list_id}/memberships/add", [ids[0]]).json()
    assert again["recordsIdsAdded"] == []
    removed = call(hubspot, "PUT", f"{base}/{list_id}/memberships/remove", [ids[0]]).json()
    assert removed == {"recordIdsRemoved": [ids[0]], "recordIdsMissing": []}
    both = call(hubspot, "PUT", f"{base}/{list_id}/memberships/add-and-remove",
                {"recordIdsToAdd": [ids[4]], "recordIdsToRemove": [ids[1]]}).json()  # fmt: skip
    assert (both["recordIdsAdded"], both["recordIdsRemoved"]) == ([ids[4]], [ids[1]])
    pages: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = call(hubspot, "GET", f"{base}/{list_id}/memberships", **params).json()
        pages.append(",".join(r["recordId"] for r in page["results"]))
        if "paging" not in page:
            break
        params["after"] = page["paging"]["next"]["after"]
    assert pages == [f"{ids[2]},{ids[3]}", ids[4]]
    dynamic = call(hubspot, "POST", base, {**body, "name": "D", "processingType": "DYNAMIC"})
    dynamic_id = dynamic.json()["list"]["listId"]
    assert call(hubspot, "PUT", f"{base}/{dynamic_id}/memberships/add", ids).status_code == 400
    assert call(hubspot, "DELETE", f"{base}/{list_id}").status_code == 204
    assert call(hubspot, "GET", f"{base}/{list_id}").status_code == 404


def sleep_until(instant: float) -> None:
    """Sleep until this time.monotonic() (at once if it has passed)."""
    time.sleep(max(0.0, instant - time.monotonic()))


def test_the_rolling_window_refuses_the_request_over_the_limit() -> None:
    path = f"/account-info/{V}/details"
    window = 2.0  # long enough for eight local requests, however loaded the machine
    with FakeHubSpot(per_ten_seconds=5, window_seconds=window) as fake:
        first_sent = time.monotonic()  # each of the five arrived after this
        left = [call(fake, "GET", path).headers["X-HubSpot-RateLimit-Remaining"] for _ in range(5)]
        five_answered = time.monotonic()  # and before this
        sleep_until(first_sent + window / 4)  # later, but with the five still in the window
        refused = [call(fake, "GET", path) for _ in range(3)]
        sleep_until(five_answered + window)  # only now have all five surely left the window
        after = call(fake, "GET", path)  # the five have left the window; the 429s never counted
    assert left == ["4", "3", "2", "1", "0"]
    assert {r.status_code for r in refused} == {429}
    assert refused[0].json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert refused[0].json()["errorType"] == "RATE_LIMIT"
    assert refused[0].headers["X-HubSpot-RateLimit-Max"] == "5"
    assert (after.status_code, after.headers["X-HubSpot-RateLimit-Remaining"]) == (200, "4")
    assert fake.requests.rate_limited == {"TEN_SECONDLY_ROLLING": 3}
    assert fake.max_in_window == 8


def test_the_daily_limit_holds_until_reset_and_a_storm_refuses_all(hubspot: FakeHubSpot) -> None:
    path = f"/account-info/{V}/details"
    assert (
        call(hubspot, "GET", path).headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    )
    hubspot.set_limits(190, daily=2)
    assert call(hubspot, "GET", path).headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    refused = call(hubspot, "GET", path)
    assert (refused.status_code, refused.json()["policyName"]) == (429, "DAILY")
    assert refused.json()["message"] == "You have reached your daily limit."
    hubspot.reset_daily()
    assert call(hubspot, "GET", path).status_code == 200
    storm = 2.0  # the request inside it has that long to arrive, however loaded the machine
    hubspot.storm(storm)
    storm_ends = time.monotonic() + storm  # at the latest: the storm began before this
    assert call(hubspot, "GET", path).json()["policyName"] == "TEN_SECONDLY_ROLLING"
    sleep_until(storm_ends)
    assert call(hubspot, "GET", path).status_code == 200


def test_injected_locks_gateway_failures_and_empty_answers(keyed: FakeHubSpot) -> None:
    keyed.lock_next(1)
    keyed.fail_next(1)
    keyed.empty_next(1)
    failed = call(keyed, "GET", f"/account-info/{V}/details")
    assert (failed.status_code, failed.headers["Content-Type"]) == (502, "text/html")
    assert call(keyed, "GET", f"/account-info/{V}/details").status_code == 200  # not a write
    locked = upsert(keyed, [{"loke_customer_id": "c1"}])
    assert (locked.status_code, locked.json()["category"]) == (423, "LOCKED")
    empty = upsert(keyed, [{"loke_customer_id": "c1"}])
    assert empty.json() == {"status": "COMPLETE", "results": [], "errors": []}
    assert keyed.contacts() == []
    assert upsert(keyed, [{"loke_customer_id": "c1"}]).status_code == 200
    assert keyed.requests.locked == 1
    assert keyed.requests.by_route["POST", "/crm/objects/contacts/batch/upsert"] == 3


class TimedHubSpot(FakeHubSpot):
    """The fake, recording in order when it took each request in (its state changed, under its
    lock) and when it answered it, and how long each request spent inside it. Requests wait at
    the door until `together` have come, so that they reach the fake at once however late
    their client threads start on a loaded machine."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self._door = threading.Barrier(together, timeout=10)
        self._recording = threading.Lock()
        self.events: list[str] = []  # "taken" and "answered", in the order they happened
        self.inside: list[float] = []  # seconds from each request's arrival to its answer

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/_fake/"):
            return super().handle(request)  # the fake's own page: neither waited for nor timed
        self._door.wait()
        arrived = time.monotonic()
        response = super().handle(request)
        with self._recording:
            self.events.append("answered")
            self.inside.append(time.monotonic() - arrived)
        return response

    def _answer(self, request: Request, now: float) -> Response:
        with self._recording:
            self.events.append("taken")
        return super()._answer(request, now)


def test_latency_delays_each_answer_but_requests_overlap() -> None:
    latency = 0.5
    with TimedHubSpot(together=4) as fake:
        fake.set_latency(latency, latency)
        statuses: list[int] = []

        def get() -> None:
            statuses.append(call(fake, "GET", f"/account-info/{V}/details").status_code)

        threads = [threading.Thread(target=get) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        state = requests.get(f"{fake.url}/_fake/state", timeout=5).json()
    assert statuses == [200] * 4
    # Requests overlap: the fake took every one of them in before it answered any (a fake that
    # slept out each latency in turn would answer the first before taking the last in).
    assert fake.events == ["taken"] * 4 + ["answered"] * 4
    # Latency delays each answer: none came sooner than `latency` after its request arrived.
    assert len(fake.inside) == 4
    assert min(fake.inside) >= latency
    assert state["requests"]["total"] == 4
    assert fake.server_errors == []
