"""The filter backend shared by every list, and filters for odd input."""

from datetime import UTC

from django.core.exceptions import ValidationError
from django_filters import fields, filters
from django_filters.rest_framework import DjangoFilterBackend


class ListFilterBackend(DjangoFilterBackend):
    """Query-string filters narrow lists only: fetching one object by id builds no filter set
    (that work showed in every detail request's profile and changed no answer)."""

    def filter_queryset(self, request, queryset, view):
        if getattr(view, "action", "list") != "list":
            return queryset
        return super().filter_queryset(request, queryset, view)


class UtcIsoDateTimeField(fields.IsoDateTimeField):
    """An ISO 8601 date-time in any offset, handed on in UTC.

    PostgreSQL refuses an offset past 15:59 (``-19:06`` is valid ISO 8601), and an instant
    that UTC cannot hold in Python's calendar (year 1 at +01:00, year 9999 at -01:00) is
    invalid input: both are a 400 naming the parameter, never a query that fails.
    """

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from exc


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` through ``UtcIsoDateTimeField``."""

    field_class = UtcIsoDateTimeField
