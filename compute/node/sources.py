"""Where a node's dataset lives: a CSV file, a Parquet file, or a SQL query on the provider's database.

A dataset's entry in the node's ``datasets.json`` names its source; without one it is
``data/<local>.csv``::

    {"local": "shoppers", "source": {"kind": "parquet", "path": "shoppers.parquet"}}
    {"local": "invoices", "source": {"kind": "sql", "dsn_env": "TAXCO_DB", "query": "SELECT ... FROM invoices"}}

Rows stream in batches of columns (numpy arrays of text, as a CSV holds them), never as one
list of Python dicts, so that a node reads a million rows in bounded memory; manifests,
column statistics and every algorithm see the same values whatever the source. A SQL source
runs in a read-only transaction with a server-side cursor; its DSN comes from the node's own
environment (``dsn_env``) or its ``datasets.json`` and never leaves the node. No Django.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 50_000


class SourceError(ValueError):
    pass


def _local_file(data_dir: Path, name: str) -> Path:
    if not name or "/" in name or name.startswith(".") or "\\" in name:
        raise SourceError(f"invalid file name {name!r}")
    path = (data_dir / name).resolve()
    if path.parent != data_dir.resolve() or not path.exists():
        raise SourceError(f"no local file {name!r}")
    return path


def kind_of(spec: dict[str, Any]) -> str:
    kind = str((spec.get("source") or {}).get("kind", "csv"))
    if kind not in ("csv", "parquet", "sql"):
        raise SourceError(f"{spec.get('local')}: unknown source kind {kind!r}")
    return kind


def _text(values: Any) -> np.ndarray:
    """A column as text, as a CSV holds it: missing values are empty strings."""
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def iter_batches(data_dir: Path, spec: dict[str, Any], batch: int = BATCH) -> Iterator[dict[str, np.ndarray]]:
    """The dataset's rows, ``batch`` at a time, as {column: array of text}, columns in source order."""
    kind = kind_of(spec)
    source = spec.get("source") or {}
    if kind == "csv":
        path = _local_file(data_dir, str(source.get("path") or f"{spec['local']}.csv"))
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            names = next(reader, [])
            while True:
                rows = list(itertools.islice(reader, batch))
                if not rows:
                    break
                # A short row has no value for its last columns: empty, as a missing value.
                yield {n: _text(r[i] if i < len(r) else "" for r in rows) for i, n in enumerate(names)}
    elif kind == "parquet":
        import pyarrow.parquet as pq

        path = _local_file(data_dir, str(source.get("path") or f"{spec['local']}.parquet"))
        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch):
            yield {name: _text(record_batch.column(name).to_pylist()) for name in record_batch.schema.names}
    else:
        import psycopg2

        dsn = os.environ.get(str(source.get("dsn_env", ""))) if source.get("dsn_env") else source.get("dsn")
        query = source.get("query")
        if not dsn or not isinstance(query, str) or not query.strip():
            raise SourceError(f"{spec.get('local')}: a SQL source needs a DSN (dsn_env or dsn) and a query")
        conn = psycopg2.connect(dsn, options="-c default_transaction_read_only=on")
        try:
            with conn.cursor(name=f"usufruct_{os.getpid()}") as cur:  # server-side: rows arrive a batch at a time
                cur.itersize = batch
                # One SELECT, nothing else: as a subquery a second statement (say one that turns the
                # session's read-only default off and writes) is a syntax error, not a write.
                cur.execute(f"SELECT * FROM ({query.strip().rstrip(';')}) AS usufruct_source")  # noqa: S608 - the operator's own query
                columns: list[str] | None = None
                while True:
                    rows = cur.fetchmany(batch)
                    if columns is None:
                        columns = [d[0] for d in cur.description or []]
                    if not rows:
                        break
                    yield {name: _text(r[i] for r in rows) for i, name in enumerate(columns)}
        finally:
            conn.rollback()
            conn.close()


def header(data_dir: Path, spec: dict[str, Any]) -> list[str]:
    """The dataset's column names, in source order (a source with no rows: from its schema)."""
    kind = kind_of(spec)
    source = spec.get("source") or {}
    if kind == "csv":
        with _local_file(data_dir, str(source.get("path") or f"{spec['local']}.csv")).open(newline="") as fh:
            return next(csv.reader(fh), [])
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(_local_file(data_dir, str(source.get("path")))).schema_arrow.names)
    for first in iter_batches(data_dir, spec, batch=1):
        return list(first)
    raise SourceError(f"{spec.get('local')}: the query returned no rows")


def read_columns(data_dir: Path, spec: dict[str, Any], columns: list[str]) -> dict[str, np.ndarray]:
    """Only ``columns``, whole, as text arrays (one pass over the source, batch by batch)."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    seen = False
    for b in iter_batches(data_dir, spec):
        seen = True
        for c in columns:
            if c not in b:
                raise SourceError(f"no column {c!r} in the local dataset")
            parts[c].append(b[c])
    if not seen:
        missing = [c for c in columns if c not in header(data_dir, spec)]
        if missing:
            raise SourceError(f"no column {missing[0]!r} in the local dataset")
    return {c: np.concatenate(v) if v else np.array([], dtype=object) for c, v in parts.items()}


def read_numeric(
    data_dir: Path, spec: dict[str, Any], id_column: str, columns: list[str]
) -> tuple[list[str], np.ndarray]:  # noqa: E501
    """The ID column (stripped text) and ``columns`` as floats (NaN where blank), converted batch by batch,
    so a million rows cost their floats, not their text. Raises :class:`SourceError` on text in a number."""
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for b in iter_batches(data_dir, spec):
        for c in (id_column, *columns):
            if c not in b:
                raise SourceError(f"no column {c!r} in the local dataset")
        ids.extend(v.strip() for v in b[id_column].tolist())
        block = np.empty((len(b[id_column]), len(columns)), dtype=float)
        for j, c in enumerate(columns):
            raw = np.char.strip(b[c].astype(str))
            blank = raw == ""
            try:
                block[:, j] = np.where(blank, np.nan, np.where(blank, "0", raw).astype(float))
            except ValueError:
                raise SourceError(f"column {c!r} is not numeric") from None
        blocks.append(block)
    matrix = np.concatenate(blocks) if blocks else np.empty((0, len(columns)))
    return ids, matrix


def read_rows(data_dir: Path, spec: dict[str, Any]) -> list[dict[str, str]]:
    """Every row as a dict of text: for the algorithms that still take rows (small datasets)."""
    out: list[dict[str, str]] = []
    for b in iter_batches(data_dir, spec):
        names = list(b)
        out.extend(dict(zip(names, values, strict=True)) for values in zip(*(b[n] for n in names), strict=True))
    return out


def digest(data_dir: Path, spec: dict[str, Any]) -> str:
    """SHA-256 of the dataset: the file's bytes, or (SQL) of its rows as text, in query order."""
    kind = kind_of(spec)
    source = spec.get("source") or {}
    if kind in ("csv", "parquet"):
        default = f"{spec['local']}.{kind}"
        return hashlib.sha256(_local_file(data_dir, str(source.get("path") or default)).read_bytes()).hexdigest()
    h = hashlib.sha256()
    for b in iter_batches(data_dir, spec):
        names = list(b)
        for values in zip(*(b[n] for n in names), strict=True):
            h.update(("\x1f".join(values) + "\x1e").encode())
    return h.hexdigest()
