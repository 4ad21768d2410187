"""A node's dataset from CSV, Parquet or a SQL query on a real PostgreSQL table: the same rows, manifest and model."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.db import connection

from compute.algorithms import hetero_lr
from compute.algorithms.base import Column, DatasetInfo, JobView, Party
from compute.node import datasets, sources
from compute.node.config import NodeConfig
from compute.node.runtime import LocalContext
from protocol import keys
from protocol.canonical import canonical

DATA = Path(__file__).parent / "data" / "breast_cancer"


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open() as fh:
        return list(csv.DictReader(fh))


def _dsn() -> str:
    db = connection.settings_dict
    return f"dbname={db['NAME']} user={db['USER']} host={db['HOST']} port={db['PORT']}"


@pytest.fixture
def host_table(transactional_db) -> str:  # type: ignore[no-untyped-def]
    """The host's training rows in a PostgreSQL table of 'its own database' (here: the test database)."""
    rows = _rows("host_train.csv")
    cols = list(rows[0])
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS host_features")
        cur.execute(
            "CREATE TABLE host_features ("
            + ", ".join(f'"{c}" text' if c == "id" else f'"{c}" double precision' for c in cols)
            + ")"
        )  # noqa: E501
        cur.executemany(
            "INSERT INTO host_features VALUES (" + ", ".join(["%s"] * len(cols)) + ")",
            [[r["id"], *(float(r[c]) for c in cols[1:])] for r in rows],
        )
    yield "host_features"
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS host_features")


def _node(folder: Path, slug: str, spec: dict[str, Any], rows: list[dict[str, str]] | None = None) -> NodeConfig:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    kind = sources.kind_of(spec)
    if kind == "csv" and rows is not None:
        with (folder / "data" / f"{spec['local']}.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if kind == "parquet" and rows is not None:
        table = pa.table({c: [r[c] if c == "id" else float(r[c]) for r in rows] for c in rows[0]})
        pq.write_table(table, folder / "data" / spec["source"]["path"])
    (folder / "datasets.json").write_text(json.dumps([spec]))
    return NodeConfig(slug=slug, directory=folder, broker_url="memory://", broker_dir=None)


def _specs(table: str) -> dict[str, dict[str, Any]]:
    cols = ", ".join(f'"{c}"' for c in _rows("host_train.csv")[0])
    return {
        "csv": {"local": "host", "roles": {"id": "id"}},
        "parquet": {"local": "host", "roles": {"id": "id"}, "source": {"kind": "parquet", "path": "host.parquet"}},
        "sql": {
            "local": "host",
            "roles": {"id": "id"},
            "source": {"kind": "sql", "dsn": _dsn(), "query": f"SELECT {cols} FROM {table} ORDER BY ctid"},
        },  # noqa: E501
    }


def test_the_three_sources_give_the_same_rows_manifest_and_columns(tmp_path: Path, host_table: str) -> None:
    rows = _rows("host_train.csv")
    configs = {k: _node(tmp_path / k, k, spec, rows) for k, spec in _specs(host_table).items()}
    manifests = {k: datasets.manifest(c.data_dir, c.dataset_specs()[0], min_group=10) for k, c in configs.items()}
    for m in manifests.values():
        m.pop("sha256")
    assert manifests["csv"]["row_count"] == 426
    assert manifests["parquet"]["columns"] == manifests["sql"]["columns"]
    # Types and roles agree with the CSV's; statistics agree to their published rounding.
    assert [(c["name"], c["type"], c["role"]) for c in manifests["csv"]["columns"]] == [
        (c["name"], c["type"], c["role"]) for c in manifests["sql"]["columns"]
    ]  # noqa: E501
    for a, b in zip(manifests["csv"]["columns"][1:], manifests["sql"]["columns"][1:], strict=True):
        assert a["summary"]["mean"] == pytest.approx(b["summary"]["mean"], abs=1e-4)
    columns = {k: sources.read_columns(c.data_dir, c.dataset_specs()[0], ["id", "x3"]) for k, c in configs.items()}
    assert list(columns["csv"]["id"]) == list(columns["sql"]["id"]) == list(columns["parquet"]["id"])
    assert np.allclose(columns["csv"]["x3"].astype(float), columns["sql"]["x3"].astype(float))


def test_batches_are_bounded_and_a_sql_source_cannot_write(tmp_path: Path, host_table: str) -> None:
    spec = _specs(host_table)["sql"]
    config = _node(tmp_path / "sql", "sql", spec)
    sizes = [len(b["id"]) for b in sources.iter_batches(config.data_dir, spec, batch=100)]
    assert sizes == [100, 100, 100, 100, 26]
    writing = {**spec, "source": {**spec["source"], "query": f"DELETE FROM {host_table} RETURNING id"}}
    with pytest.raises(Exception, match="syntax error"):  # a server-side cursor takes a query, not a write
        list(sources.iter_batches(config.data_dir, writing))
    sneaky = f"SELECT id FROM {host_table}; SET default_transaction_read_only = off; COMMIT; DELETE FROM {host_table}"
    with pytest.raises(Exception, match="syntax error"):  # a second statement cannot ride along
        list(sources.iter_batches(config.data_dir, {**spec, "source": {**spec["source"], "query": sneaky}}))
    probe = {**spec, "source": {**spec["source"], "query": "SELECT current_setting('transaction_read_only') AS ro"}}
    assert [list(b["ro"]) for b in sources.iter_batches(config.data_dir, probe)] == [
        ["on"]
    ]  # and the session is read-only
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {host_table}")  # noqa: S608
        assert cur.fetchone()[0] == 426
    with pytest.raises(sources.SourceError, match="needs a DSN"):
        list(sources.iter_batches(config.data_dir, {**spec, "source": {"kind": "sql", "query": "SELECT 1"}}))
    with pytest.raises(sources.SourceError, match="invalid file name"):
        list(
            sources.iter_batches(config.data_dir, {"local": "x", "source": {"kind": "parquet", "path": "../x.parquet"}})
        )  # noqa: E501


def _train(tmp_path: Path, host_spec: dict[str, Any], rows: list[dict[str, str]] | None) -> list[float]:
    """hetero_lr between a CSV guest and a host whose data is ``host_spec``, through real node contexts."""
    guest = _node(
        tmp_path / "guest", "bank", {"local": "mine", "roles": {"id": "id", "y": "label"}}, _rows("guest_train.csv")
    )  # noqa: E501
    host = _node(tmp_path / "host", "acme", host_spec, rows)
    algo = hetero_lr.HeteroLR(node_rng=random.Random(5))
    info = DatasetInfo(
        1, "host", (Column("id", "string", "id"), *(Column(f"x{i}", "number", "feature") for i in range(20)))
    )  # noqa: E501
    params = algo.validate(
        {"consumer_dataset": "mine", "consumer_id_column": "id", "label_column": "y", "consumer_features": [f"x{i}" for i in range(10)],  # noqa: E501
         "key_bits": 1024, "epochs": 2, "batch_size": 0, "learning_rate": 0.3, "l2": 0.01, "validation_fraction": 0.2, "tolerance": 0},  # noqa: E501
        [info],
    )  # fmt: skip
    consumer_node = {"kid": guest.kid, "public_key": keys.public_b64(guest.private_key)}
    grant = {
        "right": 1,
        "expires_at": "2999-01-01T00:00:00+00:00",
        "min_group_size": 10,
        "consumer_node": consumer_node,
    }  # noqa: E501
    job = JobView(
        id="j1",
        params=params,
        parties=[
            Party("consumer", "bank", "consumer", node_key=keys.public_b64(guest.private_key)),
            Party("provider:1", "acme", "provider", 1, "host", grant, node_key=keys.public_b64(host.private_key)),
        ],
    )  # noqa: E501
    configs = {"consumer": guest, "provider:1": host}
    outbox = list(algo.start(job).sends)
    while outbox:
        send = outbox.pop(0)
        party = job.party(send.party)
        ctx = LocalContext(config=configs[send.party], job="j1", min_group_size=10, grant=party.grant)
        result = algo.node_step(ctx, send.step, json.loads(canonical(send.body)))
        for fn in ctx.after_reply:
            fn()
        outbox.extend(algo.on_result(job, send.step, send.party, json.loads(canonical(result.body))).sends)
        job.state = json.loads(canonical(job.state))
    part: list[float] = json.loads((host.state_dir / "j1" / f"{hetero_lr.MODEL}.json").read_text())["w"]
    return part


def test_the_joint_model_trains_the_same_on_a_host_whose_rows_are_in_postgresql(
    tmp_path: Path, host_table: str
) -> None:  # noqa: E501
    specs = _specs(host_table)
    from_csv = _train(tmp_path / "a", specs["csv"], _rows("host_train.csv"))
    from_sql = _train(tmp_path / "b", specs["sql"], None)
    from_parquet = _train(tmp_path / "c", specs["parquet"], _rows("host_train.csv"))
    assert np.allclose(from_csv, from_sql, atol=1e-6) and np.allclose(from_csv, from_parquet, atol=1e-6)
    assert any(abs(w) > 1e-3 for w in from_sql)  # it learned something
