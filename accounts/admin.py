"""Operators' view of users: PII shown masked only, passwords managed by Django's forms; a
merchant's pricing, each change recorded and shown read-only; the refresh tokens issued,
without the tokens."""

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
from accounts.models import MerchantPricingChange, User
from accounts.pricing import merchant_pricing_of
from accounts.services import merchant_payout_account_set, merchant_webhook_secret_rotate, user_save_by_operator
from core.admin import ReadOnlyAdmin


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
        fields = ("username", "email", "full_name", "role", "credit_limit", "is_active", "fee_percent", "fee_fixed")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.payout_change: dict | None = None  # what save_model hands the service, once valid
        if "new_payout_account_name" in self.fields:
            self.fields["new_payout_account_name"].initial = self.instance.payout_account_name

    def clean(self) -> dict:
        data = super().clean()
        if data.get("role") != User.Role.MERCHANT:
            # A price nobody pays would still be shown, and recorded, as if it meant something.
            for name in ("fee_percent", "fee_fixed"):
                if data.get(name) is not None:
                    self.add_error(name, "Only merchants have a price; leave it empty.")
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


class MerchantPricingChangeInline(admin.TabularInline):
    """The merchant's pricing history, newest first: recorded by saving the form, never edited."""

    model = MerchantPricingChange
    fk_name = "merchant"
    fields = readonly_fields = (
        "changed_at",
        "changed_by",
        "fee_percent_before",
        "fee_percent_after",
        "fee_fixed_before",
        "fee_fixed_after",
    )
    extra = 0
    can_delete = False
    verbose_name = "pricing change"
    verbose_name_plural = "Pricing changes (empty: the default)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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
        "effective_pricing",
    )
    inlines = [MerchantPricingChangeInline]
    fieldsets = (
        (None, {"fields": ("user_id", "username", "password")}),
        ("Profile", {"fields": ("full_name", "email", "phone", "passport", "card")}),
        ("BNPL", {"fields": ("role", "status", "credit_limit", "autopay", "webhook_url")}),
        (
            "Merchant pricing",
            {
                "fields": ("fee_percent", "fee_fixed", "effective_pricing"),
                "description": "Each plan's fee when it becomes ACTIVE: its total * percent / 100, rounded half up, "
                "plus the fixed part; never above the total. Empty: the default of the settings. "
                "Plans already active keep the fee they were charged.",
            },
        ),
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

    def get_inline_instances(self, request, obj=None) -> list:
        # Only a merchant has a pricing history; the add form has none.
        return super().get_inline_instances(request, obj) if obj is not None and obj.is_merchant else []

    def save_model(self, request, obj: User, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
        else:
            # The admin's change view runs in a transaction: the change row commits with the save.
            recorded = user_save_by_operator(user=obj, operator=request.user)
            if recorded is not None:
                self.message_user(request, f"The pricing change of {obj.user_id} was recorded.")
        payout_change = getattr(form, "payout_change", None)
        if payout_change is not None:
            merchant_payout_account_set(merchant=obj, changed_by=request.user, **payout_change)

    @admin.display(description="Effective pricing")
    def effective_pricing(self, obj: User) -> str:
        pricing = merchant_pricing_of(obj) if obj.pk else None
        if pricing is None:
            return "—"
        return f"{pricing.fee_percent} % + {pricing.fee_fixed}"

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


@admin.register(MerchantPricingChange)
class MerchantPricingChangeAdmin(ReadOnlyAdmin):
    """Every merchant's pricing changes, read-only: the record is written by saving a merchant."""

    list_display = (
        "changed_at",
        "merchant",
        "changed_by",
        "fee_percent_before",
        "fee_percent_after",
        "fee_fixed_before",
        "fee_fixed_after",
    )
    list_filter = ("changed_at",)
    search_fields = ("merchant__user_id", "merchant__username", "changed_by__user_id")
    list_select_related = ("merchant", "changed_by")
    date_hierarchy = "changed_at"


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
