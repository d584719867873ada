"""Every table, by stage; importing this package registers them all on `Base.metadata`."""

from app.store.models.activity import ActivityMinute
from app.store.models.base import Base
from app.store.models.crm import CrmContact, CrmList, DeliveryConflict
from app.store.models.delivery import DeadLetter, DeliveryState, OutboxEntry, RateAccount
from app.store.models.inbox import InboxEvent
from app.store.models.mirror import Customer, CustomerList, ListMember, Payment
from app.store.models.organizations import Organization
from app.store.models.runs import BackfillRun, ListRunPage, ListSyncRun, PagedRun

__all__ = [
    "ActivityMinute",
    "BackfillRun",
    "Base",
    "CrmContact",
    "CrmList",
    "Customer",
    "CustomerList",
    "DeadLetter",
    "DeliveryConflict",
    "DeliveryState",
    "InboxEvent",
    "ListMember",
    "ListRunPage",
    "ListSyncRun",
    "Organization",
    "OutboxEntry",
    "PagedRun",
    "Payment",
    "RateAccount",
]
