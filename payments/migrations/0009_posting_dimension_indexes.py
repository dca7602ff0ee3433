"""Postings lose their single-column indexes on account, plan and party: balances are read
by (account, plan) and (account, party), indexes that lead with the account, and every
posting paid an entry in all five."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('bnpl', '0009_latefee_fewer_indexes'),
        ('payments', '0008_ledger_balance_per_statement'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='posting',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='postings', to='payments.ledgeraccount'),
        ),
        migrations.AlterField(
            model_name='posting',
            name='party',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='posting',
            name='plan',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='bnpl.plan'),
        ),
    ]
