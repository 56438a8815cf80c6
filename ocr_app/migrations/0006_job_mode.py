from django.db import migrations, models

CHOICES = [
    ("layout_all", "Full layout: boxes, categories and text"),
    ("layout_only", "Layout only: boxes and categories, no text"),
    ("text", "Text only: the page's plain text"),
    ("grounding", "Text of one region"),
]


class Migration(migrations.Migration):
    """Jobs made before task modes were read as plain text: they keep `text`; new jobs default to
    the full layout."""

    dependencies = [
        ("ocr_app", "0005_api_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="mode",
            field=models.CharField(choices=CHOICES, default="text", max_length=20),
        ),
        migrations.AlterField(
            model_name="job",
            name="mode",
            field=models.CharField(choices=CHOICES, default="layout_all", max_length=20),
        ),
    ]
