"""Bulk writes for the sequencer: PostgreSQL ``COPY FROM STDIN``, ``bulk_create`` elsewhere.

COPY skips the per-row statement overhead of INSERT, which dominates appends of
thousands of small rows; the triggers and constraints apply to it all the same.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models

_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class Json(str):
    """JSON text already serialised: written to a json/jsonb column as is (``bulk_create``: parsed back)."""


def _text(value: Any) -> str:
    # PostgreSQL COPY text format: \N for NULL, backslash escapes for the separators.
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return escape(str(value))


def escape(value: str) -> str:
    """A string as a field of COPY's text format; JSON text without raw control characters only doubles ``\\``."""
    if "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPE)
    return value.replace("\\", "\\\\")


def copy_text(model: type[models.Model], columns: Sequence[str], lines: Iterable[str]) -> None:
    """PostgreSQL only: COPY ``lines`` (already in COPY text format, one row each, ending in newline) into ``model``."""
    buf = io.StringIO()
    buf.writelines(lines)
    buf.seek(0)
    table = connection.ops.quote_name(model._meta.db_table)
    cols = ", ".join(connection.ops.quote_name(model._meta.get_field(c).column) for c in columns)
    with connection.cursor() as cursor, connection.wrap_database_errors:  # IntegrityError as Django's
        cursor.cursor.copy_expert(f"COPY {table} ({cols}) FROM STDIN", buf)


def insert_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in ``columns`` order) into ``model``'s table, in the current transaction."""
    if connection.vendor != "postgresql":
        objs = [
            model(**{c: json.loads(v) if isinstance(v, Json) else v for c, v in zip(columns, row, strict=True)})
            for row in rows
        ]
        model._default_manager.bulk_create(objs, batch_size=2000)
        return
    copy_text(model, columns, ("\t".join(_text(v) for v in row) + "\n" for row in rows))


def update_rows(model: type[models.Model], objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of saved ``objs`` in one statement, in the current transaction.

    PostgreSQL: ``UPDATE … FROM (VALUES …)``, one typed row per object. Django's
    ``bulk_update`` builds a ``CASE WHEN`` expression per value and field, whose compilation
    costs milliseconds per row; other databases (the embedded default) still take it.
    """
    if not objs:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, fields)
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [meta.get_field(f) for f in fields]
    q = connection.ops.quote_name
    row = "(" + ", ".join(f"%s::{f.db_type(connection)}" for f in [pk, *columns]) + ")"
    params: list[Any] = []
    for obj in objs:
        params.append(pk.get_db_prep_value(obj.pk, connection))
        params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns)
    names = ", ".join(q(f.column) for f in [pk, *columns])
    sets = ", ".join(f"{q(f.column)} = v.{q(f.column)}" for f in columns)
    values = ", ".join([row] * len(objs))
    # Names and casts come from the model, values are parameters.
    sql = f"UPDATE {q(meta.db_table)} AS t SET {sets} FROM (VALUES {values}) AS v ({names}) WHERE t.{q(pk.column)} = v.{q(pk.column)}"  # noqa: S608, E501
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
