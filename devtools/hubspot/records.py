"""One account's records per object: ids, values, merged-away ids that still resolve, and the
uniqueness HubSpot keeps (a contact's emails among all contacts; each unique property)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from devtools.hubspot.objects import OBJECT_TYPE_IDS
from devtools.hubspot.wire import HubSpotError, now_iso

EMAIL = ("contacts", "email")  # indexed under every email of a contact, additional ones too


@dataclass
class Record:
    """One CRM record; `properties` always holds `hs_object_id`."""

    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str

    def result(self, only: Iterable[str] | None = None) -> dict[str, Any]:
        """The record as a batch answers it: every value, or only those asked (None when unset)
        and `hs_object_id`."""
        if only is None:
            values: dict[str, str | None] = dict(self.properties)
        else:
            values = {name: self.properties.get(name) for name in only}
            values["hs_object_id"] = self.id
        return {
            "id": self.id,
            "properties": values,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": False,
        }


def emails(values: dict[str, str]) -> list[str]:
    """A contact's emails, lower-cased: `email` and each of `hs_additional_emails`."""
    held = [values.get("email", ""), *values.get("hs_additional_emails", "").split(";")]
    return list(dict.fromkeys(e.strip().lower() for e in held if e.strip()))


class RecordStore:
    """The records of one account, with an index per (object, property) built on first use."""

    def __init__(self, next_id: Callable[[], str]) -> None:
        self._next_id = next_id
        self._records: dict[str, dict[str, Record]] = {obj: {} for obj in OBJECT_TYPE_IDS}
        self._aliases: dict[str, dict[str, str]] = {obj: {} for obj in OBJECT_TYPE_IDS}
        self._indexes: dict[tuple[str, str], dict[str, str]] = {}

    def all(self, obj: str) -> list[Record]:
        """Every current record of `obj`, oldest first."""
        return list(self._records[obj].values())

    def get(self, obj: str, record_id: str) -> Record | None:
        """The current record with this id (not a merged-away one), or None."""
        return self._records[obj].get(record_id)

    def resolve(self, obj: str, record_id: str) -> Record | None:
        """The record with this id, or the one it was merged into, or None."""
        return self.get(obj, self._aliases[obj].get(record_id, record_id))

    def find(self, obj: str, name: str, value: str) -> Record | None:
        """The record whose `name` is `value` (any of its emails, case-insensitively, for a
        contact's `email`), or None."""
        key = value.strip().lower() if (obj, name) == EMAIL else value
        holder = self._index(obj, name).get(key)
        return None if holder is None else self.get(obj, holder)

    def conflict(
        self, obj: str, values: dict[str, str], unique: Iterable[str], own_id: str | None
    ) -> HubSpotError | None:
        """The CONFLICT a write of `values` to record `own_id` (None: a new one) would meet."""
        if obj == "contacts":
            for email in emails(values):
                holder = self._index(*EMAIL).get(email)
                if holder is not None and holder != own_id:
                    message = f"Contact already exists. Existing ID: {holder}"
                    return HubSpotError(409, "CONFLICT", message, context={"existingId": [holder]})
        for name in unique:
            value = values.get(name, "")
            holder = self._index(obj, name).get(value) if value else None
            if holder is not None and holder != own_id:
                message = f"{name}={value!r}: record {holder} already has that value"
                return HubSpotError(409, "CONFLICT", message, context={"existingId": [holder]})
        return None

    def create(self, obj: str, values: dict[str, str], created_at: str | None = None) -> Record:
        """A new record with these values ("" leaves a value unset)."""
        now = now_iso()
        record = Record(self._next_id(), {}, created_at or now, now)
        record.properties["hs_object_id"] = record.id
        self._records[obj][record.id] = record
        self.write(obj, record, values)
        return record

    def write(self, obj: str, record: Record, values: dict[str, str]) -> None:
        """Set values ("" clears one) and keep the indexes in step."""
        for (indexed, name), index in self._indexes.items():
            if indexed == obj:
                for key in self._keys(obj, name, record.properties):
                    index.pop(key, None)
        for name, value in values.items():
            if value == "":
                record.properties.pop(name, None)
            elif name != "hs_object_id":
                record.properties[name] = value
        record.updated_at = now_iso()
        for (indexed, name), index in self._indexes.items():
            if indexed == obj:
                index.update(dict.fromkeys(self._keys(obj, name, record.properties), record.id))

    def merge(self, primary_id: str, secondary_id: str) -> Record:
        """Merge two contacts into a new record: the primary's values (its unique ones too), the
        secondary's emails as additional emails, both ids in `hs_merged_object_ids`; both old
        ids resolve to the new one from now on."""
        primary, secondary = self.get("contacts", primary_id), self.get("contacts", secondary_id)
        if primary is None or secondary is None or primary is secondary:
            raise KeyError(f"cannot merge contacts {primary_id} and {secondary_id}")
        values = {k: v for k, v in primary.properties.items() if k != "hs_object_id"}
        own = values.get("email", "").strip().lower()
        extra = [e for e in emails(primary.properties) + emails(secondary.properties) if e != own]
        merged_ids = [
            *filter(None, primary.properties.get("hs_merged_object_ids", "").split(";")),
            *filter(None, secondary.properties.get("hs_merged_object_ids", "").split(";")),
            primary_id,
            secondary_id,
        ]
        values["hs_additional_emails"] = ";".join(dict.fromkeys(extra))
        values["hs_merged_object_ids"] = ";".join(dict.fromkeys(merged_ids))
        for old in (primary, secondary):
            self.write("contacts", old, dict.fromkeys(old.properties, ""))
            del self._records["contacts"][old.id]
        merged = self.create("contacts", values, min(primary.created_at, secondary.created_at))
        aliases = self._aliases["contacts"]
        for old_id, target in aliases.items():
            if target in (primary_id, secondary_id):
                aliases[old_id] = merged.id
        aliases[primary_id] = aliases[secondary_id] = merged.id
        return merged

    def _index(self, obj: str, name: str) -> dict[str, str]:
        """value -> record id for `name`, built from the records on first use."""
        index = self._indexes.get((obj, name))
        if index is None:
            index = self._indexes[obj, name] = {}
            for record in self._records[obj].values():
                index.update(dict.fromkeys(self._keys(obj, name, record.properties), record.id))
        return index

    @staticmethod
    def _keys(obj: str, name: str, values: dict[str, str]) -> list[str]:
        """The keys a record with `values` is indexed under for `name`."""
        if (obj, name) == EMAIL:
            return emails(values)
        value = values.get(name, "")
        return [value] if value else []
