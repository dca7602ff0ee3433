from decimal import Decimal

import factory
from django.utils import timezone

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan

    customer = factory.SubFactory(UserFactory)
    merchant = factory.SubFactory(MerchantFactory)
    total_amount = Decimal("500.00")
    currency = "USD"
    installment_count = 4
    purchase_date = factory.LazyFunction(lambda: timezone.localdate())
