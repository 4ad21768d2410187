"""PostgreSQL refuses UPDATE, DELETE and TRUNCATE on the ledger's tables.

Row-level BEFORE UPDATE OR DELETE and statement-level BEFORE TRUNCATE triggers
raise. The only escape hatch is for TRUNCATE, and only when the session set
``usufruct.allow_truncate = 'on'``: Django's test flush empties every table
with TRUNCATE (see docs/decisions/0001-ledger-append-only.md). Nothing lets an
existing row change. The triggers are an accident guard; the real barriers are
the application role's missing privileges and the signed, witnessed Merkle log.
SQLite (the embedded default) has no TRUNCATE and gets no triggers.
"""

from django.db import migrations

TABLES = ("ledger_ledgerentry", "ledger_merklenode", "ledger_checkpoint", "ledger_cosignature")

FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('usufruct.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'ledger table % is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_reject_change()"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change()"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS ledger_reject_change()")


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_backfill_merkle_nodes")]

    operations = [migrations.RunPython(forwards, backwards)]
