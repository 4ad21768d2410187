from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ledger import services
from ledger.exceptions import LedgerError
from marketplace.models import Organization


class Command(BaseCommand):
    help = "Register a regulator's witness key (vkey printed by `python -m audit.witness keygen`)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("organization", help="slug of the regulator organisation")
        parser.add_argument("vkey")

    def handle(self, *args: Any, **o: Any) -> None:
        org = Organization.objects.filter(slug=o["organization"], is_regulator=True).first()
        if org is None:
            raise CommandError(f"no regulator organisation {o['organization']!r}")
        try:
            witness = services.witness_register(organization_id=org.id, vkey=o["vkey"])
        except LedgerError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"witness {witness.name} registered for {org.name}")
