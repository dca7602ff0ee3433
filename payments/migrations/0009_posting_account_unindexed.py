"""Postings lose the index on their account alone: the (account, plan) and (account, party)
indexes lead with it, and every posting paid an entry in all three."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0008_ledger_balance_per_statement'),
    ]

    operations = [
        migrations.AlterField(
            model_name='posting',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='postings', to='payments.ledgeraccount'),
        ),
    ]
