from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework import serializers

from core.money import MoneyField, split_amount, to_money

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


# What a hostile or careless client sends for "10": each is refused, never read as an amount.
NOT_AMOUNTS = [
    "\u0661\u0660",  # Arabic-Indic "10": Decimal() and \\d take it
    "\U0001d7cf\U0001d7ce",  # mathematical bold "10"
    "\uff11\uff10",  # fullwidth "10"
    " 10",
    "10 ",
    "10\n",
    "+5.00",
    "1E+1",
    "10e-2",
    "1e1",
    "10.",
    ".5",
    "1,000.00",
    "1_000",
    "0x10",
    "10.001",
    "00000000001.00",  # eleven digits before the point
    "",
    "-",
    "NaN",
    "Infinity",
    "-Infinity",
    "sNaN",
    "abc",
    10,
    10.0,
    166.67,
    1e400,
    True,
    None,
    [],
    {},
]


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("0.01", True),
        ("1", True),
        ("1.5", True),
        ("0000000001.00", True),
        ("100000.00", True),
        ("0", False),
        ("0.00", False),
        ("-0.00", False),
        ("-1.00", False),
        ("100000.01", False),
        ("9999999999.99", False),
    ],
)
def test_money_field_bounds(raw, ok):
    field = MoneyField()
    if ok:
        assert field.run_validation(raw) == Decimal(raw)
    else:
        with pytest.raises(serializers.ValidationError):
            field.run_validation(raw)


@pytest.mark.parametrize("raw", NOT_AMOUNTS, ids=repr)
def test_money_field_takes_only_an_ascii_decimal_string(raw):
    with pytest.raises(serializers.ValidationError) as refused:
        MoneyField().run_validation(raw)
    assert refused.value.detail  # a message, naming no field here: the serializer names it


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000.00"), places=2))
def test_money_field_reads_back_what_it_writes(amount):
    field = MoneyField()
    assert field.run_validation(field.to_representation(amount)) == amount
