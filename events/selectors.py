"""Read queries of events."""

from django.db.models import QuerySet

from accounts.models import User
from events.models import Event


def event_list_for(*, viewer: User) -> QuerySet[Event]:
    """Events ``viewer`` may see: a merchant its own, an operator all."""
    events = Event.objects.select_related("merchant")
    return events if viewer.is_operator else events.filter(merchant=viewer)
