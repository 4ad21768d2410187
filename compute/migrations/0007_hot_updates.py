"""PostgreSQL storage for the hub's hot path (the embedded SQLite default has neither).

- ``compute_job`` and ``compute_jobparty`` rows are updated at every step of a job, never on
  an indexed column: room left in each page (fillfactor 70) lets PostgreSQL write the new
  version beside the old one (a HOT update) instead of adding to every index.
- ``compute_message.digest`` is looked up only by equality: the ``varchar_pattern_ops`` copy
  Django adds beside a unique ``CharField``'s index serves ``LIKE``, which nothing runs, and
  costs an index insertion for every message kept.
"""

from django.db import migrations

LIKE_INDEX = "compute_message_digest_3125b1b8_like"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE compute_job SET (fillfactor = 70)")
    schema_editor.execute("ALTER TABLE compute_jobparty SET (fillfactor = 70)")
    schema_editor.execute(f"DROP INDEX IF EXISTS {LIKE_INDEX}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE compute_job RESET (fillfactor)")
    schema_editor.execute("ALTER TABLE compute_jobparty RESET (fillfactor)")
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX} ON compute_message (digest varchar_pattern_ops)")


class Migration(migrations.Migration):
    dependencies = [("compute", "0006_message_body")]
    operations = [migrations.RunPython(forwards, backwards)]
