"""Session sign-in and sign-out for people at a browser: customers (their portal, the hosted
checkout) and merchants (the plans they sold). Django's own views and form (CSRF, ``next``
checked to stay on this site, the password never echoed), with the token endpoint's limits.
"""

from django.contrib.auth.views import LoginView, LogoutView

from ops.pages.common import PageAuthThrottle, PageLoginThrottle, throttled


class SignInView(LoginView):
    """``GET /login/`` the form; ``POST`` signs in and goes to ``next`` (else home). Too many
    attempts from one address, or for one username, are answered by the 429 page."""

    template_name = "pages/login.html"
    next_page = "home"
    http_method_names = ["get", "head", "post"]
    # Signed in already (a customer opening a checkout link again): straight on to ``next``.
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        refused = throttled(request, PageAuthThrottle, PageLoginThrottle)
        if refused is not None:
            return refused
        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:  # the form again, with its errors
            response.status_code = 400
            response.keep_error_page = True
        return response


class SignOutView(LogoutView):
    """``POST /logout/`` (a form with its CSRF token): signs out and goes home."""

    next_page = "home"
    http_method_names = ["post"]
