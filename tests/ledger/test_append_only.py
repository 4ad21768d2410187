"""PostgreSQL itself refuses to change or empty the ledger's tables."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from ledger import services
from ledger.management.commands.ledger_grants import APPEND_ONLY
from ledger.models import Checkpoint, LedgerEntry
from protocol import checkpoint as notes

from .conftest import dpa_id, register_witness

pytestmark = pytest.mark.django_db


@pytest.fixture
def cosigned(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At least one row in every append-only table."""
    name, key = register_witness(tmp_path)
    cp = Checkpoint.objects.order_by("-size").first()
    note = notes.add_cosignature(cp.note.encode(), name, key)
    services.cosignature_add(checkpoint=cp, note=note, organization_id=dpa_id())


def _refused(sql: str) -> str:
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # else PostgreSQL refuses TRUNCATE for pending FK checks
        cursor.execute("SET LOCAL usufruct.allow_truncate = 'off'")
        cursor.execute(sql)
    return str(info.value)


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_update_delete_and_truncate_are_rejected(cosigned, table) -> None:  # type: ignore[no-untyped-def]
    column = {"ledger_ledgerentry": "kind", "ledger_merklenode": "hash", "ledger_checkpoint": "note"}.get(table, "line")
    assert "append-only: UPDATE rejected" in _refused(f"UPDATE {table} SET {column} = {column}")
    assert "append-only: DELETE rejected" in _refused(f"DELETE FROM {table}")
    assert "append-only: TRUNCATE rejected" in _refused(f"TRUNCATE {table} CASCADE")


def test_the_orm_cannot_edit_or_delete_an_entry(world) -> None:  # type: ignore[no-untyped-def]
    entry = LedgerEntry.objects.get(seq=0)
    entry.payload = {"forged": True}
    with pytest.raises(DatabaseError), transaction.atomic():
        entry.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(seq=0).delete()
    assert LedgerEntry.objects.get(seq=0).payload != {"forged": True}


def test_the_application_role_has_no_update_delete_or_truncate(world) -> None:  # type: ignore[no-untyped-def]
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE usufruct_app_test NOLOGIN")  # rolled back with the test transaction
        cursor.execute("GRANT USAGE ON SCHEMA public TO usufruct_app_test")
    call_command("ledger_grants", "usufruct_app_test")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL ROLE usufruct_app_test")
        cursor.execute("SELECT count(*) FROM ledger_ledgerentry")
        assert cursor.fetchone()[0] > 0
    for sql in (
        "UPDATE ledger_ledgerentry SET kind = kind",
        "DELETE FROM ledger_merklenode",
        "TRUNCATE ledger_checkpoint",
    ):
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic(), connection.cursor() as c:
            c.execute("SET LOCAL ROLE usufruct_app_test")
            c.execute(sql)
