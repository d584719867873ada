"""Rewriting every stored secret under SECRET_KEY after a key rotation (`loke-sync reencrypt`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, select, tuple_, update

from app.core.secrets_box import SecretBox, SecretKeyMismatch
from app.store.db import make_engine
from app.store.models import Base

ENCRYPTED_SUFFIX = "_enc"
BATCH_ROWS = 100  # rows per transaction: a running service is never held up for long


def encrypted_columns(metadata: MetaData) -> list[Column[Any]]:
    """Every column, of every table, whose name ends in `_enc`: the ones SecretBox encrypts.

    Found by this naming convention rather than listed, so that a secret column added later
    (as organizations.webhook_secret_previous_enc was) is rotated without anyone remembering to
    add it here; a test checks that the convention catches the known ones.
    """
    return [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if column.name.endswith(ENCRYPTED_SUFFIX)
    ]


def reencrypt_stored_secrets(
    database_url: str, box: SecretBox, batch_rows: int = BATCH_ROWS
) -> int:
    """Rewrite every stored secret that is not under SECRET_KEY yet; returns how many it rewrote.

    Idempotent (a secret already under SECRET_KEY is left as it is) and safe beside a running
    service: each batch of rows is a short transaction of its own, and a value is replaced only
    if it is still the one read, so a secret the service changed meanwhile is never overwritten.
    Raises SecretKeyMismatch, naming the column and row, on a value neither key opens; what was
    rewritten before it stays rewritten (under SECRET_KEY, which reads it).
    """
    by_table: dict[Table, list[Column[Any]]] = {}
    for column in encrypted_columns(Base.metadata):
        by_table.setdefault(column.table, []).append(column)
    engine = make_engine(database_url)
    rewritten = 0
    try:
        for table, columns in by_table.items():
            after: Sequence[Any] | None = None
            while True:
                with engine.begin() as connection:
                    keys, count = _reencrypt_batch(
                        connection, table, columns, box, after, batch_rows
                    )
                rewritten += count
                if len(keys) < batch_rows:
                    break
                after = keys[-1]
    finally:
        engine.dispose()
    return rewritten


def _reencrypt_batch(
    connection: Connection,
    table: Table,
    columns: list[Column[Any]],
    box: SecretBox,
    after: Sequence[Any] | None,
    batch_rows: int,
) -> tuple[list[Sequence[Any]], int]:
    """The next `batch_rows` rows after primary key `after`: their keys, and how many of their
    values were rewritten."""
    primary_key = list(table.primary_key.columns)
    query = select(*primary_key, *columns).order_by(*primary_key).limit(batch_rows)
    if after is not None:
        query = query.where(tuple_(*primary_key) > tuple_(*after))
    keys: list[Sequence[Any]] = []
    rewritten = 0
    for row in connection.execute(query).all():  # all read before the first update
        key, tokens = row[: len(primary_key)], row[len(primary_key) :]
        keys.append(key)
        for column, token in zip(columns, tokens, strict=True):
            if token is None:
                continue
            try:
                fresh = box.reencrypted(token)
            except SecretKeyMismatch as exc:
                where = ", ".join(str(value) for value in key)
                raise SecretKeyMismatch(f"{table.name}.{column.name} of {where} {exc}") from None
            if fresh is None:
                continue
            matching = [pk == value for pk, value in zip(primary_key, key, strict=True)]
            changed = connection.execute(
                update(table).where(*matching, column == token).values({column.name: fresh})
            )
            rewritten += changed.rowcount
    return keys, rewritten
