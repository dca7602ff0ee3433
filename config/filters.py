"""The filter backend shared by every list."""

from django_filters.rest_framework import DjangoFilterBackend


class ListFilterBackend(DjangoFilterBackend):
    """Query-string filters narrow lists only: fetching one object by id builds no filter set
    (that work showed in every detail request's profile and changed no answer)."""

    def filter_queryset(self, request, queryset, view):
        if getattr(view, "action", "list") != "list":
            return queryset
        return super().filter_queryset(request, queryset, view)
