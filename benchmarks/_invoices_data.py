"""The data set of ``invoices.py``: a month of metered use by many consumers, in a PostgreSQL database of its own.

Built once (``usufruct_bench_invoices_<consumers>_<entries>``) and reused: each run of the
benchmark issues on a copy of it (``CREATE DATABASE … TEMPLATE``), since issued documents
and their ``document_issued`` entries can never be removed. What it holds, made by the
product's own services and writer:

- a regulator with a registered witness, which cosigns the last checkpoint;
- ``providers`` provider organisations, each with an enrolled node (``node_create`` +
  ``node_enrol``) and two datasets listed from a node-signed manifest (``dataset_register``),
  each dataset with one published offer (``offer_publish``); the offers' price plans cycle
  through postpaid per job, per 1,000 rows, per record, a subscription with overage, and a
  prepaid bundle of jobs;
- ``consumers`` consumer organisations, each with a buyer, an enrolled node of its own and
  one order of one offer (``order_place``: the order, its usage right, ``right_granted``);
- ``entries`` ``usage`` entries: jobs (``homo_lr``, one ``fl_train`` step per round, ``uses``
  rounds) spread over the consumers in a shuffled order, each round with a receipt signed
  by the provider's node as ``compute.node.runtime.sign_receipt`` makes it and the payload
  ``compute.services._record_usage`` leaves; after each job's rounds, its ``settlement``
  (outcome ``delivered``, ``use`` = the right's nth use), as ``compute.services._settle``
  leaves it — naming the usage entries by event id, which the writer turns into seqs.
  They reach the log only through the writer (pending rows → ``ledger.writer.integrate_all``),
  10,000 or so at a time, each batch followed by a signed checkpoint;
- the rights' ``quota_used`` brought in line with the settlements, then ``VACUUM ANALYZE``.

Jobs themselves (``compute.Job`` rows) are not made: issuing reads only the ledger, orders
and organisations. All of it is integrated today, so the period is the current month.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import _setup

PLANS: list[dict[str, Any]] = [
    {"kind": "per_job", "amount_minor": 150, "currency": "EUR"},
    {"kind": "per_1000_rows", "amount_minor": 40, "currency": "EUR"},
    {"kind": "per_record", "amount_minor": 1, "currency": "EUR"},
    {"kind": "subscription", "amount_minor": 20_000, "currency": "EUR", "billing": "prepaid",
     "included_units": 100, "overage_minor": 120},
    {"kind": "per_job", "amount_minor": 100, "currency": "EUR", "billing": "prepaid"},
]  # fmt: skip
ROWS = [12_000, 4_800, 30_000, 2_500, 9_000, 18_500, 6_200, 25_000]  # per dataset, cycled
PASSES = 3  # fl_train: one evaluation pass and two local epochs (homo_lr's ``passes``)
CHUNK = 10_000  # pending entries per writer call (whole jobs: a job's uses and settlement together)
META = "bench_invoices_meta"
WITNESS = "dpa.example/audit-witness"


def base_name(consumers: int, entries: int) -> str:
    return f"usufruct_bench_invoices_{consumers}_{entries}"


def var_dir(consumers: int, entries: int) -> str:
    return f"/tmp/usufruct-bench-invoices-{consumers}-{entries}"


def url_of(name: str) -> str:
    return _setup.URL.rsplit("/", 1)[0] + f"/{name}"


def _admin():  # type: ignore[no-untyped-def]
    import dj_database_url
    import psycopg2

    cfg = dj_database_url.parse(_setup.URL)
    conn = psycopg2.connect(
        dbname="postgres", user=cfg["USER"], host=cfg["HOST"], port=cfg["PORT"], password=cfg["PASSWORD"] or None
    )
    conn.autocommit = True
    return conn


def meta(name: str) -> dict[str, str] | None:
    """The finished build's facts (None if the database is missing or its build did not finish)."""
    import psycopg2

    try:
        conn = psycopg2.connect(url_of(name))
    except psycopg2.Error:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT key, value FROM {META}")  # noqa: S608
            facts = dict(cur.fetchall())
    except psycopg2.Error:
        return None
    finally:
        conn.close()
    return facts if facts.get("complete") == "yes" else None


def copy_database(template: str, name: str) -> float:
    """``name`` as a fresh copy of ``template`` (dropped first if it exists); seconds taken."""
    admin = _admin()
    start = time.perf_counter()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        try:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        except Exception:  # noqa: BLE001  (PostgreSQL < 15 has no STRATEGY)
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    admin.close()
    return time.perf_counter() - start


def drop_database(name: str) -> None:
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def drop_stale_copies(base: str) -> list[str]:
    """Drop the copies ``<base>_run<pid>`` whose run's process is gone (a run that was killed leaves its copy)."""
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{base}_run%"])
        names = [row[0] for row in cur.fetchall()]
    dropped = []
    for name in names:
        pid = name.removeprefix(f"{base}_run")
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        dropped.append(name)
    admin.close()
    return dropped


def restore_hub_key(facts: dict[str, str], directory: str) -> None:
    """Put the hub key the ledger was signed with where the settings look for it (``/tmp`` may be cleaned)."""
    from pathlib import Path

    path = Path(directory) / "hub_ed25519.pem"
    pem = facts["hub_pem"].encode()
    if not path.exists() or path.read_bytes() != pem:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pem)
        path.chmod(0o600)


# --- the build (in a process of its own: ``invoices.py`` runs it as a child) -------------------------


def build(consumers: int, entries: int, uses: int, providers: int) -> None:
    name = base_name(consumers, entries)
    _setup.URL = url_of(name)
    _setup.fresh_database()
    _setup.django_setup(var_dir(consumers, entries))
    import psycopg2
    from django.conf import settings
    from django.db import connection

    from ledger.models import LedgerEntry

    start = time.perf_counter()
    jobs_each = -(-max(1, entries // uses) // consumers)
    world = _world(consumers, providers, quota=max(jobs_each + 10, 100))  # the subscription includes 100 jobs
    print(f"  world made: {time.perf_counter() - start:.1f} s", flush=True)
    used = _usage(world, entries, uses)
    _finish(world, used)
    first = LedgerEntry.objects.filter(kind="usage").order_by("seq").values_list("integrated_at", flat=True).first()
    facts = {
        "consumers": str(consumers),
        "entries": str(entries),
        "uses_per_job": str(uses),
        "providers": str(providers),
        "built_at": datetime.now(UTC).isoformat(),
        "period": first.strftime("%Y-%m"),
        "hub_pem": settings.USUFRUCT_HUB_KEY_FILE.read_text(),
        "ledger_size": str(LedgerEntry.objects.count()),
    }
    connection.close()
    conn = psycopg2.connect(_setup.URL)
    conn.autocommit = True  # VACUUM runs outside a transaction; a database in steady use has been analysed
    with conn.cursor() as cur:
        t = time.perf_counter()
        cur.execute("VACUUM ANALYZE")
        print(f"  VACUUM ANALYZE: {time.perf_counter() - t:.1f} s", flush=True)
        facts["build_seconds"] = f"{time.perf_counter() - start:.1f}"
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        facts["database_size"] = cur.fetchone()[0]
        cur.execute(f"CREATE TABLE {META} (key text PRIMARY KEY, value text NOT NULL)")
        for key, value in [*facts.items(), ("complete", "yes")]:
            cur.execute(f"INSERT INTO {META} VALUES (%s, %s)", [key, value])  # noqa: S608
    conn.close()
    print(
        f"  built in {facts['build_seconds']} s: {int(facts['ledger_size']):,} ledger entries, "
        f"database {facts['database_size']}",
        flush=True,
    )


class _World:
    def __init__(self) -> None:
        self.node_keys: dict[str, Any] = {}  # provider node slug → private key
        self.datasets: list[Any] = []
        self.offers: list[Any] = []
        self.rights: list[Any] = []  # per consumer, its one right (select_related order, dataset, consumer)
        self.consumer_kids: dict[int, str] = {}  # consumer org id → its node's kid
        self.regulator: Any = None
        self.witness_key: Any = None


def _enrol(org: Any, slug: str) -> tuple[Any, Any]:
    """A node made and enrolled as the product does it: one-time token, then the node's proof of possession."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from marketplace import services
    from protocol import keys
    from protocol.canonical import canonical, sha256_hex
    from protocol.envelope import Opened

    node, token = services.node_create(organization=org, slug=slug)
    key = Ed25519PrivateKey.generate()
    payload = {"sender": slug, "step": "enrol", "body": {"token": token, "public_key": keys.public_b64(key)}}
    node = services.node_enrol(
        opened=Opened(payload=payload, kid=keys.key_id(key), digest=sha256_hex(canonical(payload)))
    )
    return node, key


def _world(consumers: int, providers: int, quota: int) -> _World:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from ledger import services as ledger_services
    from marketplace import services
    from marketplace.models import Membership, Organization, UsageRight
    from protocol import checkpoint as notes
    from protocol.canonical import canonical, sha256_hex
    from protocol.envelope import Opened, format_time

    w = _World()
    # The regulator's witness (as ``audit.witness.keygen`` makes one, kept in memory here).
    w.regulator = Organization.objects.create(name="Data Protection Authority", slug="dpa", is_regulator=True)
    w.witness_key = Ed25519PrivateKey.generate()
    public = w.witness_key.public_key().public_bytes_raw()
    vkey = notes.encode_vkey(WITNESS, public, notes.SIG_COSIGNATURE_V1)
    ledger_services.witness_register(organization_id=w.regulator.id, vkey=vkey)
    now = format_time(datetime.now(UTC))
    columns = [{"name": "id", "type": "string", "role": "id"}]
    columns += [{"name": f"x{c}", "type": "number", "role": "feature"} for c in range(4)]
    for p in range(providers):
        org = Organization.objects.create(
            name=f"Provider {p + 1} Data GmbH", slug=f"provider-{p + 1}", is_provider=True,
            billing_address=f"Datenstraße {p + 1}\n10117 Berlin\nGermany", tax_id=f"DE8{p + 1:08d}",
        )  # fmt: skip
        node, key = _enrol(org, f"provider-{p + 1}")
        w.node_keys[node.slug] = key
        for d in range(2):
            i = len(w.datasets)
            manifest = {
                "local": f"ds{d + 1}", "name": f"Provider {p + 1} signals {d + 1}", "row_count": ROWS[i % len(ROWS)],
                "sha256": sha256_hex(f"dataset {i}".encode()), "description": "benchmark data", "columns": columns,
            }  # fmt: skip
            payload = {"sender": node.slug, "step": "announce", "issued_at": now, "body": {"manifest": manifest}}
            opened = Opened(payload=payload, kid=node.kid, digest=sha256_hex(canonical(payload)))
            w.datasets.append(services.dataset_register(node=node, opened=opened))
    for i, ds in enumerate(w.datasets):
        w.offers.append(
            services.offer_publish(
                organization=ds.organization, dataset=ds, title=f"{ds.name}, compute only",
                operations=["stats", "homo_lr"], quota_jobs=quota, duration_days=365, min_group_size=10,
                plans=[PLANS[i % len(PLANS)]], terms="Compute-only use. No re-identification. No resale.",
            )
        )  # fmt: skip
    orgs = Organization.objects.bulk_create(
        Organization(
            name=f"Consumer {i + 1:05d} Ltd",
            slug=f"consumer-{i + 1:05d}",
            is_consumer=True,
            billing_address=f"{i + 1} High Street\nLondon EC{1 + i % 4}A {i % 9}XX\nUnited Kingdom",
            tax_id=f"GB{100000000 + i}",
        )  # fmt: skip
        for i in range(consumers)
    )
    User = get_user_model()
    unusable = make_password(None)
    users = User.objects.bulk_create(
        User(username=f"buyer-{i + 1:05d}", email=f"buyer{i + 1}@example.org", password=unusable)
        for i in range(consumers)
    )
    Membership.objects.bulk_create(
        Membership(user=u, organization=o, role="admin") for u, o in zip(users, orgs, strict=True)
    )
    t = time.perf_counter()
    for i, (org, user) in enumerate(zip(orgs, users, strict=True)):
        node, _ = _enrol(org, f"consumer-{i + 1:05d}")
        w.consumer_kids[org.id] = node.kid
        services.order_place(
            consumer=org, buyer=user, offer_id=w.offers[i % len(w.offers)].id, plan_id=None,
            purpose="monthly risk models", accept_terms=True, idempotency_key=f"bench-order-{i + 1}",
        )  # fmt: skip
        if (i + 1) % 250 == 0 or i + 1 == consumers:
            print(f"  {i + 1:,} consumers: node enrolled, order placed ({time.perf_counter() - t:.1f} s)", flush=True)
    w.rights = list(
        UsageRight.objects.filter(consumer__in=orgs).select_related("order", "dataset__node", "consumer").order_by("id")
    )
    return w


def _usage(w: _World, entries: int, uses: int) -> dict[int, int]:
    """The month's jobs through the writer; returns each right's delivered uses."""
    from _chain import leave_pending

    from ledger import services as ledger_services
    from ledger import writer
    from ledger.services import Draft
    from protocol import envelope
    from protocol.canonical import canonical, sha256_hex

    jobs = max(1, entries // uses)
    extra = entries - jobs * uses  # the first ``extra`` jobs have one round more
    order = list(range(jobs))
    random.Random(14).shuffle(order)
    used: dict[int, int] = {r.id: 0 for r in w.rights}
    drafts: list[Draft] = []
    written = 0
    t = time.perf_counter()
    step_time = datetime.now(UTC) - timedelta(minutes=5)
    at = envelope.format_time(step_time)
    last_report = 0
    for n, j in enumerate(order):
        right = w.rights[j % len(w.rights)]
        ds, consumer = right.dataset, right.consumer
        node_key = w.node_keys[ds.node.slug]
        job = str(uuid.UUID(int=(14 << 96) + j))
        events, rows_sum, records_sum = [], 0, 0
        for rnd in range(uses + (1 if j < extra else 0)):
            rows = ds.row_count - (j + rnd) % 97
            receipt = {
                "type": "usage_receipt", "job": job, "step": "fl_train", "round": rnd, "node": ds.node.slug,
                "dataset": ds.id, "right": right.id, "consumer": consumer.slug,
                "consumer_kid": w.consumer_kids[consumer.id], "operation": "homo_lr", "rows": rows,
                "records": rows * PASSES, "request": uuid.UUID(int=(j << 16) + rnd).hex, "at": at,
            }  # fmt: skip
            wire = envelope.sign_payload(receipt, key=node_key, kid=ds.node.kid)
            event = f"usage:{sha256_hex(canonical(receipt))}"  # the Opened receipt's digest
            drafts.append(
                Draft(
                    "usage", event,
                    {
                        "job": job, "step": "fl_train", "round": rnd, "dataset": ds.id, "right": right.id,
                        "order": right.order_id, "consumer": consumer.id, "provider": ds.organization_id,
                        "operation": "homo_lr", "rows": rows, "records": rows * PASSES, "passes": PASSES,
                        "receipt": wire,
                    },
                    producer_time=step_time, dataset_id=ds.id, consumer_id=consumer.id,
                    provider_id=ds.organization_id, right_id=right.id,
                )
            )  # fmt: skip
            events.append(event)
            rows_sum += rows
            records_sum += rows * PASSES
        used[right.id] += 1
        drafts.append(
            Draft(
                "settlement", f"settlement:{job}:{right.id}",
                {
                    "job": job, "right": right.id, "order": right.order_id, "dataset": ds.id,
                    "consumer": consumer.id, "provider": ds.organization_id, "outcome": "delivered",
                    "usage": events, "rows": rows_sum, "records": records_sum, "units": 1, "use": used[right.id],
                },
                dataset_id=ds.id, consumer_id=consumer.id, provider_id=ds.organization_id, right_id=right.id,
            )
        )  # fmt: skip
        written += len(events)
        if len(drafts) >= CHUNK or n == len(order) - 1:
            leave_pending(drafts)
            writer.integrate_all()
            ledger_services.checkpoint_create()
            drafts = []
            if written - last_report >= 100_000 or n == len(order) - 1:
                last_report = written
                rate = written / (time.perf_counter() - t)
                print(
                    f"  {written:,} usage entries and {n + 1:,} settlements on the log ({rate:,.0f} usage/s)",
                    flush=True,
                )
    return used


def _finish(w: _World, used: dict[int, int]) -> None:
    """The rights' live counters as the settlements left them; the last checkpoint, cosigned by the witness."""
    from django.db import connection

    from ledger import services as ledger_services
    from marketplace.models import UsageRight
    from protocol import checkpoint as notes

    with connection.cursor() as cur:
        values = ",".join(f"({rid},{n})" for rid, n in used.items())
        table = UsageRight._meta.db_table
        cur.execute(f"UPDATE {table} AS r SET quota_used = v.n FROM (VALUES {values}) AS v(id, n) WHERE r.id = v.id")  # noqa: S608
    cp = ledger_services.checkpoint_create()
    assert cp is not None
    cosigned = notes.add_cosignature(cp.note.encode(), WITNESS, w.witness_key)
    ledger_services.cosignature_add(checkpoint=cp, note=cosigned, organization_id=w.regulator.id)
    print(f"  checkpoint {cp.size:,} signed and cosigned by {WITNESS}", flush=True)
