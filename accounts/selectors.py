"""Reads of users, scoped by who is asking."""

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import User


def user_list_for(*, viewer: User) -> QuerySet[User]:
    """The users ``viewer`` may see: operators everyone, merchants themselves and the
    customers of the plans they sold, customers only themselves."""
    users = User.objects.all()
    if viewer.is_operator:
        return users
    if viewer.is_merchant:
        # `plans` is the reverse side of bnpl.Plan.customer: a lookup, not an import, so
        # accounts still depends on no other app's code.
        return users.filter(Q(pk=viewer.pk) | Q(plans__merchant=viewer)).distinct()
    return users.filter(pk=viewer.pk)


def user_get_for(*, viewer: User, user_id: str) -> User:
    """One user by public id within ``viewer``'s scope; anything outside it is a 404."""
    try:
        return user_list_for(viewer=viewer).get(user_id=user_id)
    except User.DoesNotExist as exc:
        raise Http404("No user with this user_id.") from exc
