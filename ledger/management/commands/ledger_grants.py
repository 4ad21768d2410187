from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from ledger.models import Checkpoint, Cosignature, LedgerEntry, MerkleNode

APPEND_ONLY = [m._meta.db_table for m in (LedgerEntry, MerkleNode, Checkpoint, Cosignature)]


class Command(BaseCommand):
    help = (
        "Give the application's database role SELECT and INSERT, and no UPDATE, DELETE or TRUNCATE, "
        "on the ledger's append-only tables (PostgreSQL; run as the tables' owner)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("role", help="the role the web and worker processes connect as")

    def handle(self, *args: Any, **o: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("only PostgreSQL has roles and privileges")
        role = connection.ops.quote_name(o["role"])
        with connection.cursor() as cursor:
            for table in APPEND_ONLY:
                name = connection.ops.quote_name(table)
                cursor.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {name} FROM {role}")
                cursor.execute(f"GRANT SELECT, INSERT ON {name} TO {role}")
        self.stdout.write(f"{o['role']}: SELECT, INSERT only on {', '.join(APPEND_ONLY)}")
