"""Pages for people (not the API): the home page.

``/`` is the first address a new visitor opens and the admin's "View site" link. For now it is
a landing page (what the service is, how to sign in, where the API's documentation and the
health dashboard are) and, for a signed-in user, a greeting with their role and the same links;
it grows into the customer and merchant portal (DESIGN §5), when pages move to their own app.
Pages are not part of the REST API: none is in the OpenAPI schema.
"""

from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe


@never_cache  # it greets the signed-in user: no shared cache may keep one person's page
# It changes nothing and answers no unsafe method: a POST is told 405, not refused for its CSRF token.
@csrf_exempt
@require_safe
def home(request):
    """``GET /`` (and HEAD): the landing page, or a greeting for a signed-in (session) user."""
    return render(request, "home.html")
