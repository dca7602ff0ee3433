"""Late fees keep two indexes fewer: every fee a sweep charges paid an entry in each.

- installment: the unique (installment, kind) index leads with it;
- status (and its LIKE twin): fees are read by plan; the checks read most of them;
- waived_by: nothing looks fees up by who waived them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('bnpl', '0008_sweep_chunks'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='latefee',
            name='installment',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='late_fees', to='bnpl.installment'),
        ),
        migrations.AlterField(
            model_name='latefee',
            name='status',
            field=models.CharField(choices=[('DUE', 'Due'), ('PAID', 'Paid'), ('WAIVED', 'Waived')], default='DUE', max_length=8),
        ),
        migrations.AlterField(
            model_name='latefee',
            name='waived_by',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
    ]
