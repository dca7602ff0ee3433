"""Serializer pieces every app's API shares."""

import copy
import datetime
import decimal
from collections.abc import Mapping
from decimal import Decimal

from rest_framework import relations, serializers
from rest_framework.fields import empty

# Fields that hold other fields or serializers (bound to the declared instance), or querysets:
# DRF's deep copy rebuilds these.
_COMPOSITE = (
    serializers.BaseSerializer,
    serializers.ListField,
    serializers.DictField,
    relations.RelatedField,
    relations.ManyRelatedField,
)
_IMMUTABLE = (str, int, float, Decimal, bool, datetime.date, datetime.time, datetime.timedelta, type(None))


def declared_field_copy(field: serializers.Field) -> serializers.Field:
    """A fresh, unbound copy of a declared field, equal to the one DRF's deep copy builds.

    DRF gives every serializer instance a deep copy of its declared fields, which runs each
    field's ``__init__`` again (building its validators and choices) on every request. A
    declared field is never bound or changed after its ``__init__``, so a copy of its
    attributes is the same field; only the ones holding other fields, a queryset or a
    mutable default are still deep-copied, as they would share something that changes."""
    default = field.default
    if isinstance(field, _COMPOSITE) or not (default is empty or callable(default) or isinstance(default, _IMMUTABLE)):
        return copy.deepcopy(field)
    # What copy.copy makes, without its reduce protocol (most of the copy's cost): a field
    # keeps its state in its __dict__ alone.
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone


class StrictSerializer(serializers.Serializer):
    """A request body that may hold only the fields it declares.

    Any other key is a 400 naming it, ``{"currency": ["Unknown field."]}``, reported together
    with the other fields' errors: on a request that moves money, a field the server ignores
    is a meaning the client gave that silently did not happen (``"currency": "USD"`` on a
    payment toward an EUR plan). The OpenAPI schema says ``additionalProperties: false``
    (core.schema.StrictSerializerExtension).
    """

    default_error_messages = {"unknown_field": "Unknown field."}

    def get_fields(self):
        return {name: declared_field_copy(field) for name, field in self._declared_fields.items()}

    def to_internal_value(self, data):
        unknown = {}
        if isinstance(data, Mapping):
            message = self.error_messages["unknown_field"]
            unknown = {key: [message] for key in data if key not in self.fields}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown, code="unknown_field")
        return value


class CaseInsensitiveChoiceField(serializers.ChoiceField):
    """A choice taken in any ASCII case (``"customer"``, ``"Merchant"``) and handed on as
    declared (``"CUSTOMER"``); the schema still lists the declared values.

    Only ASCII folds: Unicode case mapping would make ``"cu\\u017ftomer"`` (a long s, which
    upper-cases to "S") a customer too.
    """

    def to_internal_value(self, data):
        if isinstance(data, str) and data.isascii():
            declared = {str(choice).lower(): choice for choice in self.choices}
            data = declared.get(data.lower(), data)
        return super().to_internal_value(data)


# The output fields the hand-built answers (plan_out, payment_out, refund_out) put their
# values through, as the serializers they stand for would: one instance each, shared, since
# to_representation keeps no state. AMOUNT is every amount field's shape.
AMOUNT = {"max_digits": 12, "decimal_places": 2}
_MONEY = serializers.DecimalField(**AMOUNT)
_DATE = serializers.DateField()
_DATETIME = serializers.DateTimeField()


# DecimalField.to_representation's quantize, without copying the thread's context per call:
# the context it copies is the default one (the project never changes it) with AMOUNT's digits.
_CENT = Decimal("0.01")
_MONEY_CONTEXT = decimal.Context(prec=AMOUNT["max_digits"])


def money_out(value) -> str:
    """An amount as an AMOUNT DecimalField shows it ("166.67")."""
    if not isinstance(value, Decimal):
        return _MONEY.to_representation(value)
    return format(value.quantize(_CENT, context=_MONEY_CONTEXT), "f")


def date_out(value) -> str:
    """A date as a DateField shows it."""
    return _DATE.to_representation(value)


def datetime_out(value) -> str | None:
    """A moment as a DateTimeField shows it; None as null."""
    return None if value is None else _DATETIME.to_representation(value)
