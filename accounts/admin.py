"""Operators' view of users: PII shown masked only, passwords managed by Django's forms; the
refresh tokens issued, without the tokens."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.db import models
from rest_framework_simplejwt.token_blacklist import admin as token_admin
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.bank import (
    ACCOUNT_NAME_MAX_LENGTH,
    PAYOUT_ACCOUNT_INPUT_MAX_LENGTH,
    PayoutAccountInvalid,
    payout_account_after,
)
from accounts.models import User
from accounts.services import merchant_payout_account_set, merchant_webhook_secret_rotate


class UnrenderedTextInput(forms.TextInput):
    """A text box whose value is never written back into the page, even when the form comes
    back with errors: what was typed in it is not shown again, in clear, to anyone."""

    def format_value(self, value) -> None:
        return None


class BnplUserChangeForm(UserChangeForm):
    # The payout account is not a model field here: the service is its one writer (save_model),
    # and the form shows the account masked only (the read-only "Payout account" beside it).
    new_payout_account = forms.CharField(
        label="New payout account",
        required=False,
        max_length=PAYOUT_ACCOUNT_INPUT_MAX_LENGTH,
        widget=UnrenderedTextInput(attrs={"autocomplete": "off"}),
        help_text="Merchants: an IBAN or an account number of 6 to 34 digits, to replace the one on file. "
        "Left blank, the account on file stays.",
    )
    new_payout_account_name = forms.CharField(
        label="Account holder",
        required=False,
        max_length=ACCOUNT_NAME_MAX_LENGTH,
        help_text="Merchants: the account holder's name, as the bank knows it.",
    )
    remove_payout_account = forms.BooleanField(
        label="Remove the payout account", required=False, help_text="No payouts until a new one is set."
    )

    class Meta(UserChangeForm.Meta):
        model = User
        fields = ("username", "email", "full_name", "role", "credit_limit", "is_active")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.payout_change: dict | None = None  # what save_model hands the service, once valid
        if "new_payout_account_name" in self.fields:
            self.fields["new_payout_account_name"].initial = self.instance.payout_account_name

    def clean(self) -> dict:
        data = super().clean()
        if "new_payout_account" not in self.fields:
            return data
        if data.get("remove_payout_account"):
            account, name = "", None  # the name goes with the account
        else:
            account, name = data.get("new_payout_account") or None, data.get("new_payout_account_name", "")
        changing = account is not None or (name is not None and name != self.instance.payout_account_name)
        if not changing:
            return data
        if data.get("role", self.instance.role) != User.Role.MERCHANT:
            field = "new_payout_account" if account is not None else "new_payout_account_name"
            self.add_error(field, "Only merchants are paid out.")
            return data
        try:
            # The same check the service makes again, under the row's lock, when it is saved.
            payout_account_after(
                number=self.instance.payout_account,
                kind=self.instance.payout_account_kind,
                holder=self.instance.payout_account_name,
                account=account,
                name=name,
            )
        except PayoutAccountInvalid as exc:
            self.add_error(f"new_{exc.field}", exc.message)
            return data
        self.payout_change = {"account": account, "name": name}
        return data


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = BnplUserChangeForm
    # A webhook URL typed without a scheme means https (Django 6's default, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # No creation time column (the date hierarchy above the list filters by it, and the list
    # is in creation order): the masked payout accounts take its width at 1366 px.
    list_display = ("user_id", "username", "full_name", "role", "status", "phone", "card_or_payout", "credit_limit")
    list_filter = ("role", "status", "autopay", "is_active", "is_staff")
    search_fields = ("user_id", "username", "full_name", "email")
    ordering = ("id",)
    date_hierarchy = "created_at"
    # `status` belongs to the services (the sweep, payments): shown, never edited by hand.
    readonly_fields = (
        "user_id",
        "status",
        "phone",
        "passport",
        "card",
        "payout",
        "is_staff",
        "created_at",
        "updated_at",
        "last_login",
    )
    fieldsets = (
        (None, {"fields": ("user_id", "username", "password")}),
        ("Profile", {"fields": ("full_name", "email", "phone", "passport", "card")}),
        ("BNPL", {"fields": ("role", "status", "credit_limit", "autopay", "webhook_url")}),
        (
            "Payouts (merchants)",
            {
                "fields": (
                    "payout",
                    "new_payout_account",
                    "new_payout_account_name",
                    "remove_payout_account",
                )
            },
        ),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "created_at", "updated_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "role", "usable_password", "password1", "password2"),
            },
        ),
    )

    actions = ["rotate_webhook_secret"]

    @admin.action(description="Rotate the webhook secret of the selected merchants (shown once)")
    def rotate_webhook_secret(self, request, queryset) -> None:
        for merchant in queryset.filter(role=User.Role.MERCHANT):
            secret = merchant_webhook_secret_rotate(merchant=merchant)
            self.message_user(request, f"New webhook secret for {merchant.user_id}: {secret} (it is not shown again)")

    @admin.display(description="Phone")
    def phone(self, obj: User) -> str:
        return obj.masked_phone

    @admin.display(description="Passport")
    def passport(self, obj: User) -> str:
        return obj.masked_passport

    @admin.display(description="Card")
    def card(self, obj: User) -> str:
        return obj.masked_card

    # Not named after the model's field: the admin would show the field itself, in clear.
    @admin.display(description="Payout account")
    def payout(self, obj: User) -> str:
        return obj.masked_payout_account

    # One column for both in the list, so that it still fits a 1366 px screen: customers pay
    # by card, merchants are paid to their account.
    @admin.display(description="Card / payout")
    def card_or_payout(self, obj: User) -> str:
        return obj.masked_payout_account if obj.is_merchant else obj.masked_card

    def save_model(self, request, obj: User, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        payout_change = getattr(form, "payout_change", None)
        if payout_change is not None:
            merchant_payout_account_set(merchant=obj, changed_by=request.user, **payout_change)


class OutstandingTokenAdmin(token_admin.OutstandingTokenAdmin):
    """simplejwt's read-only list of the refresh tokens issued, without the token itself: a
    refresh token not yet expired or spent is that user's session, for whoever reads it."""

    exclude = ("token",)
    search_fields = ("user__user_id", "jti")

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [name for name in super().get_readonly_fields(request, obj) if name != "token"]


# Registered by simplejwt's app, which comes before accounts in INSTALLED_APPS.
if admin.site.is_registered(OutstandingToken):
    admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, OutstandingTokenAdmin)
