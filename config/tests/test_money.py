from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework import serializers

from config.money import MoneyField, split_amount, to_money

totals = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000.00"), places=2)


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        ("500.00", 3, ["166.67", "166.67", "166.66"]),
        ("100.00", 4, ["25.00"] * 4),
        ("0.05", 2, ["0.03", "0.02"]),
        ("100000.00", 24, ["4166.67"] * 16 + ["4166.66"] * 8),
        ("10.01", 4, ["2.51", "2.50", "2.50", "2.50"]),
    ],
)
def test_split_amount_examples(total, parts, expected):
    assert split_amount(Decimal(total), parts) == [Decimal(x) for x in expected]


@given(total=totals, parts=st.integers(min_value=2, max_value=24))
def test_split_parts_sum_to_total_and_differ_by_at_most_a_cent(total, parts):
    amounts = split_amount(total, parts)

    assert len(amounts) == parts
    assert sum(amounts) == total
    assert max(amounts) - min(amounts) <= Decimal("0.01")
    assert all(a == a.quantize(Decimal("0.01")) for a in amounts)
    assert amounts == sorted(amounts, reverse=True)  # the leftover cents go to the first ones


def test_to_money_rounds_half_up_once():
    assert to_money("2.345") == Decimal("2.35")
    assert to_money("2.344") == Decimal("2.34")
    assert to_money(5) == Decimal("5.00")


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("0.01", True),
        ("100000.00", True),
        (166.67, True),
        ("0", False),
        ("-1.00", False),
        ("100000.01", False),
        ("1.001", False),
        ("abc", False),
        ("NaN", False),
        ("Infinity", False),
        (1e400, False),
        ([], False),
    ],
)
def test_money_field_bounds(raw, ok):
    field = MoneyField()
    if ok:
        assert field.run_validation(raw) == Decimal(str(raw))
    else:
        with pytest.raises(serializers.ValidationError):
            field.run_validation(raw)
