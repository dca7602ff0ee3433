"""The ledger app takes over the models of the books from payments, without moving a row.

The tables ``payments_ledgeraccount``, ``payments_journalentry``, ``payments_posting`` and
``payments_ledgercheckrun`` were made by payments migrations 0001 to 0010, and so were the
PostgreSQL triggers on them (the balance guard of 0008, the append-only guards of 0002):
they stay as they are. This migration only creates the models in the ledger's state
(``db_table`` keeps the names); payments 0011 deletes them from the payments state. On a
fresh database the payments migrations still make the tables and the triggers first.

The content types of the four models move from payments to ledger, so that the admin's
history and any permission given on them follow the rows.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import content_types_moved

content_types_to_ledger, content_types_to_payments = content_types_moved(
    ["ledgeraccount", "journalentry", "posting", "ledgercheckrun"], source="payments", target="ledger"
)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        # The tables and their triggers exist once payments is at 0010.
        ("payments", "0010_idempotency_key_principal_index_dropped"),
        ("bnpl", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='LedgerAccount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('code', models.CharField(max_length=64, unique=True)),
                        ('name', models.CharField(max_length=128)),
                        ('kind', models.CharField(choices=[('ASSET', 'Asset'), ('LIABILITY', 'Liability'), ('INCOME', 'Income')], max_length=16)),
                    ],
                    options={
                        'db_table': 'payments_ledgeraccount',
                        'ordering': ['code'],
                    },
                ),
                migrations.CreateModel(
                    name='LedgerCheckRun',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('checked_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('ok', models.BooleanField()),
                        ('breach_count', models.PositiveIntegerField(default=0)),
                        ('breaches', models.JSONField(blank=True, default=list)),
                        ('duration_ms', models.PositiveIntegerField(default=0)),
                    ],
                    options={
                        'db_table': 'payments_ledgercheckrun',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='JournalEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('ORIGINATION', 'Plan origination'), ('PAYMENT', 'Installment payment'), ('LATE_FEE', 'Late fee'), ('FEE_WAIVER', 'Late fee waived'), ('REFUND_APPLIED', 'Refund applied to unpaid installments'), ('REFUND_PAYOUT', 'Refund paid back to the customer'), ('REFUND_CREDIT', "Refund credited to the customer's balance")], max_length=32)),
                        ('memo', models.CharField(blank=True, max_length=255)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('plan', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='bnpl.plan')),
                    ],
                    options={
                        'verbose_name_plural': 'journal entries',
                        'db_table': 'payments_journalentry',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Posting',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('amount', models.DecimalField(decimal_places=2, max_digits=14)),
                        ('currency', models.CharField(max_length=3)),
                        ('account', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='postings', to='ledger.ledgeraccount')),
                        ('entry', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='postings', to='ledger.journalentry')),
                        ('party', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('plan', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='bnpl.plan')),
                    ],
                    options={
                        'db_table': 'payments_posting',
                        'ordering': ['id'],
                        'indexes': [models.Index(fields=['account', 'plan'], name='posting_account_plan'), models.Index(fields=['account', 'party'], name='posting_account_party')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('amount', 0), _negated=True), name='posting_amount_not_zero')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_to_ledger, content_types_to_payments),
    ]
