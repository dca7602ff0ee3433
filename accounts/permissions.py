"""Role checks for API views."""

from rest_framework.permissions import BasePermission


class HasRole(BasePermission):
    """Allows authenticated users whose role is in ``roles``; use ``HasRole.of(...)``."""

    roles: tuple[str, ...] = ()
    message = "Your role may not perform this action."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "role", None) in self.roles)

    @classmethod
    def of(cls, *roles: str) -> type["HasRole"]:
        return type(f"HasRole_{'_'.join(roles)}", (cls,), {"roles": tuple(roles)})
