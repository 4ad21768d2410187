from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _allow_truncate(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Test databases only: Django's test flush empties tables with TRUNCATE, which the
    # ledger's triggers otherwise refuse. UPDATE and DELETE stay refused regardless.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET usufruct.allow_truncate = 'on'")


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.backends.signals import connection_created

        if getattr(settings, "USUFRUCT_LEDGER_ALLOW_TRUNCATE", False):
            connection_created.connect(_allow_truncate, dispatch_uid="ledger_allow_truncate")
