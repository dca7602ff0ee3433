"""The Idempotency-Key records move from payments to core (an HTTP concern no app owns).

Only Django's state moves: the table stays ``payments_idempotencykey`` (``db_table``), with
its rows, indexes and constraints, so nothing is copied or locked. payments 0011 removes the
model from payments' state after this one has added it here. The content type is renamed
so that the permissions and admin history given on the records follow them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import content_types_moved


content_type_follows, content_type_returns = content_types_moved(["idempotencykey"], source="payments", target="core")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("payments", "0010_idempotency_key_principal_index_dropped"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("key", models.CharField(max_length=255)),
                        ("method", models.CharField(max_length=8)),
                        ("path", models.CharField(max_length=255)),
                        ("fingerprint", models.CharField(max_length=64)),
                        (
                            "status",
                            models.CharField(
                                choices=[("IN_FLIGHT", "In flight"), ("COMPLETED", "Completed")],
                                default="IN_FLIGHT",
                                max_length=16,
                            ),
                        ),
                        ("response_status", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("response_body", models.TextField(blank=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("expires_at", models.DateTimeField(db_index=True)),
                        (
                            "principal",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "payments_idempotencykey",
                        "constraints": [
                            models.UniqueConstraint(fields=("principal", "key"), name="idempotency_key_per_principal")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_follows, content_type_returns, elidable=True),
    ]
