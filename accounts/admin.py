"""Operators' view of users: PII shown masked only, passwords managed by Django's forms; the
refresh tokens issued, without the tokens."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.db import models
from rest_framework_simplejwt.token_blacklist import admin as token_admin
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import User
from accounts.services import merchant_webhook_secret_rotate


class BnplUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = ("username", "email", "full_name", "role", "credit_limit", "is_active")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = BnplUserChangeForm
    # A webhook URL typed without a scheme means https (Django 6's default, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("user_id", "username", "full_name", "role", "status", "phone", "card", "credit_limit", "created_at")
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
        "is_staff",
        "created_at",
        "updated_at",
        "last_login",
    )
    fieldsets = (
        (None, {"fields": ("user_id", "username", "password")}),
        ("Profile", {"fields": ("full_name", "email", "phone", "passport", "card")}),
        ("BNPL", {"fields": ("role", "status", "credit_limit", "autopay", "webhook_url")}),
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
