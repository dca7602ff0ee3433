"""The read-replica router: analytics read from the replica when one is configured, every
write and every other read stay on the primary."""

import pytest

from bnpl.api import views as bnpl_views
from bnpl.models import Plan
from config.db_router import REPLICA, ReplicaRouter, _prefer_replica, reading_from_replica


@pytest.fixture
def with_replica(settings):
    """``DATABASE_REPLICA_URL`` set: a ``replica`` alias in DATABASES (what the router reads)."""
    settings.DATABASES = {**settings.DATABASES, REPLICA: {**settings.DATABASES["default"]}}


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_reads_go_to_the_replica_only_inside_the_block(with_replica):
    assert Plan.objects.all().db == "default"
    with reading_from_replica():
        assert Plan.objects.all().db == REPLICA
        assert Plan.objects.select_for_update().db == "default"  # a locking read is a write's read
        assert ReplicaRouter().db_for_write(Plan) is None  # writes: the primary, always
    assert Plan.objects.all().db == "default"


def test_without_a_replica_everything_stays_on_the_primary():
    router = ReplicaRouter()
    with reading_from_replica():
        assert router.db_for_read(Plan) is None
        assert Plan.objects.all().db == "default"
    assert router.allow_migrate("default", "bnpl") is True
    assert router.allow_migrate(REPLICA, "bnpl") is False


@pytest.mark.django_db
def test_the_analytics_dashboard_reads_inside_the_replica_block(as_user, merchant, make_plan, monkeypatch):
    make_plan(merchant=merchant)
    seen = []
    original = bnpl_views.merchant_dashboard

    def watched(**kwargs):
        seen.append("replica block" if _prefer_replica.get() else "primary")
        return original(**kwargs)

    monkeypatch.setattr(bnpl_views, "merchant_dashboard", watched)
    assert as_user(merchant).get("/api/v1/analytics/dashboard/").status_code == 200
    assert seen == ["replica block"]
    assert as_user(merchant).get("/api/v1/plans/").status_code == 200
    assert seen == ["replica block"], "other views never enter the block"
