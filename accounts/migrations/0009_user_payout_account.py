"""Merchants' payout bank account: the number encrypted at rest (IBAN or plain account
number), its kind and its holder's name, all three set or none."""

from django.db import migrations, models

import accounts.fields


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_merchant_pricing"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="payout_account",
            field=accounts.fields.EncryptedTextField(blank=True, db_default="", default=""),
        ),
        migrations.AddField(
            model_name="user",
            name="payout_account_kind",
            field=models.CharField(
                blank=True,
                choices=[("IBAN", "IBAN"), ("ACCOUNT_NUMBER", "Account number")],
                db_default="",
                default="",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="payout_account_name",
            field=models.CharField(blank=True, db_default="", default="", max_length=70),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.CheckConstraint(
                condition=models.Q(payout_account="", payout_account_kind="", payout_account_name="")
                | (
                    ~models.Q(payout_account="")
                    & models.Q(payout_account_kind__in=["IBAN", "ACCOUNT_NUMBER"])
                    & ~models.Q(payout_account_name="")
                ),
                name="user_payout_account_complete",
            ),
        ),
    ]
