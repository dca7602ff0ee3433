"""refunds 0004 drops the merchant's own index, which a transaction id's check was planned
on with stale statistics: lookups by merchant are left the (merchant, transaction_id) one."""

import pytest
from django.core.management import call_command
from django.db import connection

from refunds.models import Refund
from refunds.tests.factories import refund_requested

pytestmark = [pytest.mark.django_db(transaction=True)]


def _indexes_led_by_merchant() -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Refund._meta.db_table)
    indexed = {name for name, c in constraints.items() if c["index"] or c["unique"]}
    return {name for name in indexed if constraints[name]["columns"][:1] == ["merchant_id"]}


def test_the_merchant_is_indexed_only_with_its_transaction_ids_and_the_way_back_restores_it(make_plan):
    refund = refund_requested(make_plan(total="100.00"), "10.00", transaction_id="rf-kept")
    assert _indexes_led_by_merchant() == {"refund_transaction_per_merchant"}

    call_command("migrate", "refunds", "0003", verbosity=0)
    try:
        assert _indexes_led_by_merchant() == {"refund_transaction_per_merchant", "refunds_refund_merchant_id_bc44f600"}
    finally:
        call_command("migrate", "refunds", verbosity=0)

    assert _indexes_led_by_merchant() == {"refund_transaction_per_merchant"}
    assert Refund.objects.get(merchant_id=refund.merchant_id, transaction_id="rf-kept").pk == refund.pk
