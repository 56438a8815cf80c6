"""Fast substring search in the history on PostgreSQL.

Django's icontains becomes `UPPER(col) LIKE UPPER('%q%')`; a trigram GIN index on
UPPER(col) serves it without scanning every job. SQLite has no such index type, so
nothing happens there.
"""

from django.db import migrations

INDEXES = {
    "job_text_trgm": "text",
    "job_name_trgm": "original_name",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS {name} ON ocr_app_job USING gin (UPPER("{column}"::text) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("ocr_app", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
