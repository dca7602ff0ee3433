"""Consent (DESIGN §6): offered, authorized, declined, expired and voided plans, and each
merchant's references unique. Existing plans were all originated ACTIVE and stay so."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, Min

REFERENCE_LENGTH = 128


def references_made_unique(apps, schema_editor):
    """Before the constraint: where a merchant used one reference on several plans (a retry
    without an Idempotency-Key), the first plan keeps it and each later one gets ``#<plan id>``
    appended, so no plan is lost and each stays findable by what it was sold under."""
    Plan = apps.get_model("bnpl", "Plan")
    db = schema_editor.connection.alias
    repeated = (
        Plan.objects.using(db)
        .exclude(merchant_reference="")
        .values("merchant_id", "merchant_reference")
        .annotate(plans=Count("id"), first=Min("id"))
        .filter(plans__gt=1)
    )
    for group in repeated:
        later = Plan.objects.using(db).filter(
            merchant_id=group["merchant_id"], merchant_reference=group["merchant_reference"], id__gt=group["first"]
        )
        for plan in later.only("id", "merchant_reference"):
            suffix = f"#{plan.pk}"
            plan.merchant_reference = plan.merchant_reference[: REFERENCE_LENGTH - len(suffix)] + suffix
            plan.save(update_fields=["merchant_reference"])


class Migration(migrations.Migration):

    dependencies = [
        ('bnpl', '0012_late_fee_paid_or_waived'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='plan',
            name='plan_status_valid',
        ),
        migrations.AddField(
            model_name='plan',
            name='activated_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='plan',
            name='authorized_amount',
            field=models.DecimalField(blank=True, decimal_places=2, max_digits=12, null=True),
        ),
        migrations.AddField(
            model_name='plan',
            name='capture_mode',
            field=models.CharField(choices=[('automatic', 'Automatic (active on confirmation)'), ('manual', 'Manual (the merchant captures)')], db_default='automatic', default='automatic', max_length=16),
        ),
        migrations.AddField(
            model_name='plan',
            name='checkout_token',
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.AddField(
            model_name='plan',
            name='confirmed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='plan',
            name='created_by',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='plan',
            name='expires_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='plan',
            name='status',
            field=models.CharField(choices=[('PENDING', 'Pending (offered, awaiting the customer)'), ('AUTHORIZED', 'Authorized (awaiting capture)'), ('ACTIVE', 'Active'), ('COMPLETED', 'Completed'), ('CANCELLED', 'Cancelled'), ('DECLINED', 'Declined by the customer'), ('EXPIRED', 'Expired'), ('VOIDED', 'Voided')], db_index=True, default='ACTIVE', max_length=16),
        ),
        migrations.AddIndex(
            model_name='plan',
            index=models.Index(condition=models.Q(('status__in', ['PENDING', 'AUTHORIZED'])), fields=['expires_at'], name='plan_open_expires_at'),
        ),
        migrations.AddIndex(
            model_name='plan',
            index=models.Index(condition=models.Q(('status__in', ['PENDING', 'AUTHORIZED'])), fields=['customer', 'currency'], name='plan_open_customer'),
        ),
        migrations.RunPython(references_made_unique, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='plan',
            constraint=models.UniqueConstraint(condition=models.Q(('merchant_reference', ''), _negated=True), fields=('merchant', 'merchant_reference'), name='plan_merchant_reference_unique'),
        ),
        migrations.AddConstraint(
            model_name='plan',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['PENDING', 'AUTHORIZED', 'ACTIVE', 'COMPLETED', 'CANCELLED', 'DECLINED', 'EXPIRED', 'VOIDED'])), name='plan_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='plan',
            constraint=models.CheckConstraint(condition=models.Q(('capture_mode__in', ['automatic', 'manual'])), name='plan_capture_mode_valid'),
        ),
        migrations.AddConstraint(
            model_name='plan',
            constraint=models.CheckConstraint(condition=models.Q(('authorized_amount__isnull', True), ('total_amount__lte', models.F('authorized_amount')), _connector='OR'), name='plan_total_within_authorized'),
        ),
    ]
