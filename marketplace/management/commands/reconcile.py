from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from marketplace.exceptions import ServiceError
from marketplace.reconcile import reconcile


class Command(BaseCommand):
    help = "Recompute every issued invoice, credit note and statement from the ledger; report each difference."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--period", help="only documents of this month, YYYY-MM")

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            checked, differences = reconcile(o.get("period"))
        except ServiceError as exc:
            raise CommandError("; ".join(m for msgs in exc.fields.values() for m in msgs) or exc.message) from None
        for d in differences:
            self.stdout.write(f"DIFFERENCE {d}")
        self.stdout.write(f"{checked} documents reconciled with the ledger: {len(differences)} differences")
        if differences:
            raise CommandError(f"{len(differences)} differences")
