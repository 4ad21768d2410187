from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ledger import selectors, services


class Command(BaseCommand):
    help = "Sign a checkpoint of the ledger now (no-op if nothing was appended since the last one)."

    def handle(self, *args: Any, **options: Any) -> None:
        cp = services.checkpoint_create()
        if cp is None:
            self.stdout.write("The ledger is empty: nothing to sign.")
            return
        self.stdout.write(selectors.checkpoint_note(cp), ending="")
