import copy
import decimal
import importlib
from decimal import Decimal

import pytest
from rest_framework import serializers

from core.serializers import AMOUNT, StrictSerializer, declared_field_copy, money_out


def _strict_serializers() -> list[type[StrictSerializer]]:
    """Every StrictSerializer the project declares: the URL map imports every view, and the
    views their bodies."""
    importlib.import_module("config.urls")
    found, todo = [], [StrictSerializer]
    while todo:
        cls = todo.pop()
        if ".tests." not in cls.__module__:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _state(field: serializers.Field) -> dict:
    """A field's attributes, validators as what they check and say. Not its creation counter,
    which orders a class's declared fields once, when the class is made."""
    skipped = {"_validators", "_creation_counter"}
    return {name: value for name, value in vars(field).items() if name not in skipped} | {
        "validators": [
            (type(v), getattr(v, "limit_value", None), str(getattr(v, "message", "")), getattr(v, "code", None))
            for v in field.validators
        ]
    }


def test_every_declared_field_copies_to_what_drf_deep_copy_builds():
    serializer_classes = _strict_serializers()
    assert len(serializer_classes) > 8  # the project's request bodies were found
    for cls in serializer_classes:
        for name, field in cls._declared_fields.items():
            ours, drfs = declared_field_copy(field), copy.deepcopy(field)
            assert ours is not field
            assert _state(ours) == _state(drfs), f"{cls.__name__}.{name}"


class _Body(StrictSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    method = serializers.ChoiceField(choices=["CARD", "CREDIT"], required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    extra = serializers.DictField(required=False, default={})


def test_each_body_binds_its_own_fields_and_leaves_the_declared_ones_unbound():
    first, second = _Body(data={"amount": "1.00"}), _Body(data={"amount": "2.00"})
    assert first.is_valid()
    assert second.is_valid()
    assert first.validated_data["amount"] != second.validated_data["amount"]
    for name, declared in _Body._declared_fields.items():
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first
        assert second.fields[name].parent is second
        assert declared.field_name is None
        assert declared.parent is None


def test_fields_holding_fields_or_a_mutable_default_are_deep_copied():
    first, second = _Body(), _Body()
    assert first.fields["tags"].child is not second.fields["tags"].child
    assert first.fields["tags"].child.parent is first.fields["tags"]
    assert first.fields["extra"].default is not second.fields["extra"].default


def test_a_body_still_refuses_an_unknown_field_and_a_bad_value_together():
    body = _Body(data={"amount": "x", "currency": "USD"})
    assert not body.is_valid()
    assert set(body.errors) == {"amount", "currency"}


MONEY_CASES = [
    *("166.67", "0", "0.00", "-3.1", "1.005", "1.015", "2.675"),
    *("999999999.99", "1E+2", "0E-10", "7.999", "-0.005"),
]


@pytest.mark.parametrize("text", MONEY_CASES)
def test_money_out_shows_an_amount_as_the_decimal_field_does(text):
    value = Decimal(text)
    assert money_out(value) == serializers.DecimalField(**AMOUNT).to_representation(value)


def test_money_out_refuses_what_the_decimal_field_refuses():
    too_long = Decimal("12345678901234.5")
    with pytest.raises(decimal.InvalidOperation):
        serializers.DecimalField(**AMOUNT).to_representation(too_long)
    with pytest.raises(decimal.InvalidOperation):
        money_out(too_long)
    assert money_out(3) == "3.00"
