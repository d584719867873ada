"""LOKE webhook bodies parsed into typed values (shapes from docs/loke-api.md).

Parsing is lenient where LOKE is known to vary (two spellings of the statistics times, numbers
sent as strings, timestamps with or without offsets) and strict where ordering depends on it
(a customer without `updatedAt` cannot be ordered, so it is refused with a clear reason).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from app.core.timestamps import as_utc
from app.core.validation import ID_CHARS, NO_NUL, summary

CUSTOMER_EVENTS = frozenset({"customer.created", "customer.updated"})
STATISTICS_EVENT = "customer.updated-statistics"
PAYMENT_EVENTS = frozenset({"payment.completed", "payment.refunded"})
HANDLED_EVENTS = CUSTOMER_EVENTS | PAYMENT_EVENTS | {STATISTICS_EVENT}

Id = Annotated[str, Field(min_length=1, max_length=ID_CHARS), NO_NUL]
Text = Annotated[str, Field(max_length=1000), NO_NUL]
Timestamp = Annotated[dt.datetime, AfterValidator(as_utc)]
Amount = Annotated[int, Field(ge=-(2**53), le=2**53)]  # lowest denomination; JSON-safe


class _Loke(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Statistics(_Loke):
    """A customer's loyalty and spend statistics."""

    points_balance: Amount | None = Field(None, alias="pointsBalance")
    total_points_earned: Amount | None = Field(None, alias="totalPointsEarned")
    total_points_redeemed: Amount | None = Field(None, alias="totalPointsRedeemed")
    total_spend: Amount | None = Field(None, alias="totalSpend")
    last_points_earned_at: Timestamp | None = Field(
        None, validation_alias=AliasChoices("lastPointsEarnedAt", "lastPointsEarned")
    )
    last_points_redeemed_at: Timestamp | None = Field(
        None, validation_alias=AliasChoices("lastPointsRedeemedAt", "lastPointsRedeemed")
    )
    last_spent_at: Timestamp | None = Field(
        None, validation_alias=AliasChoices("lastSpentAt", "lastSpend")
    )


class CustomerTiny(_Loke):
    """The few fields of a customer that payments, statistics and list members carry."""

    id: Id
    email: Text | None = None
    first_name: Text | None = Field(None, alias="firstName")
    last_name: Text | None = Field(None, alias="lastName")
    phone_number: Text | None = Field(None, alias="phoneNumber")


class ListMemberRecord(TypedDict):
    """A list member as LOKE pages it: CustomerTiny's fields under LOKE's names. A dict, not a
    model: a member page is a thousand of them, validated straight from the JSON bytes in a
    fraction of the time that parsing and building models takes."""

    id: Id
    email: NotRequired[Text | None]
    firstName: NotRequired[Text | None]
    lastName: NotRequired[Text | None]
    phoneNumber: NotRequired[Text | None]


MEMBER_PAGE = TypeAdapter(list[ListMemberRecord])
MEMBER = TypeAdapter(ListMemberRecord)


class Customer(CustomerTiny):
    """A full customer, as webhooks and the Customers endpoint send it."""

    dob: dt.date | None = None
    gender: Text | None = None
    has_agreed_to_marketing: bool | None = Field(None, alias="hasAgreedToMarketing")
    created_at: Timestamp | None = Field(None, alias="createdAt")
    updated_at: Timestamp = Field(alias="updatedAt")
    statistics: Statistics | None = None


class PaymentItem(_Loke):
    """One item of a payment."""

    id: Text | None = None
    name: Text | None = None
    quantity: Amount | None = None
    amount: Amount | None = None


class Payment(_Loke):
    """A payment, completed or refunded."""

    id: Id
    customer: CustomerTiny | None = None
    total: Amount
    currency: Annotated[str, Field(min_length=3, max_length=3), NO_NUL]
    created_at: Timestamp | None = Field(None, alias="createdAt")
    completed_at: Timestamp | None = Field(None, alias="completedAt")
    refunded_at: Timestamp | None = Field(None, alias="refundedAt")
    location_id: Text | None = Field(None, alias="locationId")
    items: Annotated[list[PaymentItem], Field(max_length=1000)] = []


class OrganizationRef(_Loke):
    """The organization a webhook is about."""

    id: Id
    name: Text | None = None


class CustomerEvent(_Loke):
    """customer.created and customer.updated."""

    event: Literal["customer.created", "customer.updated"]
    customer: Customer
    organization: OrganizationRef


class StatisticsEvent(_Loke):
    """customer.updated-statistics."""

    event: Literal["customer.updated-statistics"]
    statistics: Statistics
    customer: CustomerTiny
    organization: OrganizationRef


class PaymentEvent(_Loke):
    """payment.completed and payment.refunded."""

    event: Literal["payment.completed", "payment.refunded"]
    payment: Payment
    organization: OrganizationRef


LokeEvent = Annotated[CustomerEvent | StatisticsEvent | PaymentEvent, Field(discriminator="event")]
_EVENT_ADAPTER: TypeAdapter[CustomerEvent | StatisticsEvent | PaymentEvent] = TypeAdapter(LokeEvent)


class InvalidEvent(ValueError):
    """A body that passed the signature but cannot be applied; the message says why."""


def parse_event(body: dict[str, Any]) -> CustomerEvent | StatisticsEvent | PaymentEvent:
    """Validate a handled event's body, or raise InvalidEvent naming the first bad fields."""
    try:
        return _EVENT_ADAPTER.validate_python(body)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {body.get('event')} body: {summary(exc)}") from None
