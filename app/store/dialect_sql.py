"""The INSERT ... ON CONFLICT builders for the database at hand (PostgreSQL or SQLite)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg import sql
from sqlalchemy import (
    Connection,
    Select,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

ROWS_PARAM = "rows"


def name(bind: Session | Connection) -> str:
    """ "postgresql" or "sqlite"."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return str(dialect.name)


def insert(bind: Session | Connection, table: Any) -> Any:
    """Both dialects spell upserts the same way (`on_conflict_do_*`, `excluded`)."""
    return insert_for(name(bind), table)


def insert_for(dialect: str, table: Any) -> Any:
    """The INSERT construct of the dialect named."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def bulk_insert_for(dialect: str, table: Any, columns: Sequence[str]) -> Any:
    """An INSERT of many rows at once, to be run with `bulk_params`; upsert clauses apply as
    to `insert_for`.

    On PostgreSQL the rows travel as one JSON array unpacked by `jsonb_to_recordset`, in the
    order given: one short statement, parsed once, however many rows (an executemany with
    RETURNING would be multi-row VALUES lists of thousands of placeholders, parsed by the
    driver on every call). SQLite, the embedded store, takes an ordinary executemany.
    """
    if dialect != "postgresql":
        return sqlite.insert(table)
    rows = (
        func.jsonb_to_recordset(cast(bindparam(ROWS_PARAM, type_=Text), postgresql.JSONB))
        .table_valued(*(column(c, table.c[c].type) for c in columns))
        .render_derived(name="r", with_types=True)
    )
    # A function scan yields the array's order, which callers use as their lock order.
    source = select(*(rows.c[c] for c in columns))
    return postgresql.insert(table).from_select(list(columns), source)


def bulk_params(dialect: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    """The parameters of a `bulk_insert_for` statement for these rows."""
    if dialect != "postgresql":
        return list(rows)
    return {ROWS_PARAM: json.dumps(rows, default=_json_value, separators=(",", ":"))}


def append_rows(
    session: Session, table: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Append rows to a table with no unique key to check. On PostgreSQL with COPY, the
    cheapest way in for a thousand rows (a third less than an INSERT from one JSON parameter,
    whose rows the server parses as JSON first); on SQLite an executemany."""
    if name(session) != "postgresql":
        params = [dict(zip(columns, row, strict=True)) for row in rows]
        if params:  # (an empty executemany would insert one row of defaults)
            session.execute(table.insert(), params)
        return
    # COPY runs on the session's own connection, so inside its transaction.
    driver = session.connection().connection.driver_connection
    if driver is None:  # (only a connection already closed has none)
        raise RuntimeError("COPY needs an open connection")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _json_value(value: object) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be sent as a JSON row")


def is_any_of(bind: Session | Connection, column: Any, values: Sequence[str]) -> Any:
    """`column IN values` for a long list of strings. On PostgreSQL one array parameter
    (`= ANY(%s)`), which an index probes as well as an IN list, where an IN list would be a
    thousand placeholders that the driver parses again for every batch."""
    if name(bind) == "postgresql":
        return column == any_(literal(list(values), postgresql.ARRAY(Text)))
    return column.in_(values)


def is_any_selected(bind: Session | Connection, column: Any, values: Select[Any]) -> Any:
    """`column IN (values)` for a subquery. On PostgreSQL `= ANY(ARRAY(values))`, which probes
    an index on `column` once per value, where an IN is planned as a hash join over every row
    the index prefix matches (a whole list, to find the few members that changed)."""
    if name(bind) == "postgresql":
        return column == any_(func.array(values.scalar_subquery()))
    return column.in_(values)
