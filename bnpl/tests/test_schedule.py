from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnpl.schedule import add_months, build_schedule, days_past_due_bucket, due_dates


def test_monthly_dates_clamp_without_drift():
    assert due_dates(date(2027, 12, 31), 4, "MONTHLY") == [
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
    ]
    assert due_dates(date(2026, 1, 31), 3, "MONTHLY") == [date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]


def test_weekly_and_biweekly_dates():
    assert due_dates(date(2026, 11, 22), 2, "WEEKLY") == [date(2026, 11, 29), date(2026, 12, 6)]
    assert due_dates(date(2026, 11, 22), 2, "BIWEEKLY") == [date(2026, 12, 6), date(2026, 12, 20)]


def test_unknown_frequency_is_refused():
    with pytest.raises(ValueError, match="frequency"):
        due_dates(date(2026, 1, 1), 2, "DAILY")


@given(
    anchor=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    count=st.integers(min_value=2, max_value=24),
)
def test_monthly_dates_never_drift(anchor, count):
    dates = due_dates(anchor, count, "MONTHLY")

    for k, due in enumerate(dates, start=1):
        months = (due.year - anchor.year) * 12 + due.month - anchor.month
        assert months == k  # exactly k months on
        # the anchor's day, or the month's last day when the month is shorter
        assert due.day == anchor.day or (due.day < anchor.day and (due + timedelta(days=1)).day == 1)
    assert dates == sorted(dates)
    assert len(set(dates)) == count


@given(
    anchor=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    count=st.integers(min_value=2, max_value=24),
    frequency=st.sampled_from(["WEEKLY", "BIWEEKLY"]),
)
def test_weekly_dates_are_exact_periods_from_the_anchor(anchor, count, frequency):
    step = 7 if frequency == "WEEKLY" else 14
    assert due_dates(anchor, count, frequency) == [anchor + timedelta(days=step * k) for k in range(1, count + 1)]


def test_add_months_crosses_years():
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2026, 1, 15), 24) == date(2028, 1, 15)


def test_build_schedule_pairs_amounts_and_dates():
    schedule = build_schedule(total=Decimal("500.00"), count=3, frequency="MONTHLY", purchase_date=date(2026, 1, 31))
    assert schedule == [
        (1, Decimal("166.67"), date(2026, 2, 28)),
        (2, Decimal("166.67"), date(2026, 3, 31)),
        (3, Decimal("166.66"), date(2026, 4, 30)),
    ]


@pytest.mark.parametrize(
    ("days", "bucket"), [(0, "current"), (1, "1-30"), (30, "1-30"), (31, "31-60"), (61, "61-90"), (91, "90+")]
)
def test_days_past_due_buckets(days, bucket):
    assert days_past_due_bucket(days) == bucket
