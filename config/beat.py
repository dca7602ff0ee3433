"""Kept only for the applied migrations that import ``periodic_jobs`` from here (events 0002,
payments 0007; an applied migration is not edited): the helper is core.beat's."""

from core.beat import periodic_jobs

__all__ = ["periodic_jobs"]
