"""Issued documents are immutable: the database refuses UPDATE and DELETE of a document or its lines.

A refund or correction after issue is a credit note (a new document), never an edit. Row-level
triggers on PostgreSQL and SQLite; Django's test flush on PostgreSQL empties tables with TRUNCATE,
which row triggers do not see. An accident guard: the document's digest is also on the ledger
(``document_issued``), and ``manage.py reconcile`` compares the two.
"""

from django.db import migrations

TABLES = ("marketplace_document", "marketplace_documentline")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION marketplace_document_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'issued documents are immutable (% on %): issue a credit note instead', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION marketplace_document_immutable()"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            for op in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'issued documents are immutable: issue a credit note instead'); END"
                )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        elif vendor == "sqlite":
            for op in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS marketplace_document_immutable()")


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0006_documents")]

    operations = [migrations.RunPython(forwards, backwards)]
