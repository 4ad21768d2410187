"""The ledger writer's fast path (docs/decisions/0012-ledger-writer.md).

- A pending entry keeps its payload as RFC 8785 text, made at acceptance, outside the lock.
- The ledger loses indexes nothing queries: the ``varchar_pattern_ops`` twins Django adds on
  PostgreSQL for unique text columns (no LIKE ever runs on an event id or a hash), and the
  single-column ``provider_id`` index, which ``ledger_provider_seq`` (provider_id, seq) covers.
"""

from django.db import migrations, models

from protocol.canonical import canonical


def _to_text(apps, schema_editor):
    PendingEntry = apps.get_model("ledger", "PendingEntry")
    for row in PendingEntry.objects.all().iterator():
        row.payload_json = canonical(row.payload).decode()
        row.save(update_fields=["payload_json"])


def _drop_like_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('ledger_ledgerentry', 'ledger_pendingentry') "
            "AND indexname LIKE '%%\\_like'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0009_pending_entries"),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingentry",
            name="payload_json",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.RunPython(_to_text, migrations.RunPython.noop),
        migrations.RemoveField(model_name="pendingentry", name="payload"),
        migrations.AlterField(
            model_name="ledgerentry",
            name="provider_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(_drop_like_indexes, migrations.RunPython.noop),
    ]
