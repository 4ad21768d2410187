from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ledger import services


class Command(BaseCommand):
    help = "Rotate the hub's signing key, recording it in the ledger (restart web and workers afterwards)."

    def handle(self, *args: Any, **options: Any) -> None:
        entry = services.hub_key_rotate()
        services.checkpoint_create()
        p = entry.payload
        self.stdout.write(f"hub key {p['old_kid']} -> {p['new_kid']} (ledger entry #{entry.seq}); new log vkey:")
        self.stdout.write(services.log_vkey())
