"""Events keep two indexes fewer, one entry fewer each for every event written (a sweep
writes one per installment it marks):

- the public id is unique by one constraint, without the second (LIKE) index that
  ``unique=True`` adds on PostgreSQL;
- the merchant: the (merchant, id) index leads with it.
"""

import django.db.models.deletion
import events.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0002_relay_jobs'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='event',
            name='merchant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='events', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='event',
            name='public_id',
            field=models.CharField(default=events.models.generate_event_id, editable=False, max_length=40),
        ),
        migrations.AddConstraint(
            model_name='event',
            constraint=models.UniqueConstraint(fields=('public_id',), name='event_public_id_unique'),
        ),
    ]
