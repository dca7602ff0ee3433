"""The API's documentation pages (Swagger UI, ReDoc) under the pages' Content-Security-Policy."""

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView


class RedocView(SpectacularRedocView):
    """ReDoc, started by ``static/bnpl/redoc-init.js``, which hands it the page's CSP nonce."""

    # ReDoc's bundle adds perfect-scrollbar's stylesheet as an inline <style> as it loads, before
    # Redoc.init can give it the nonce (the styles it generates later carry the nonce). That
    # stylesheet's hash, and the empty string's (the element is checked once as it is inserted,
    # empty, then again when filled), are allowed on this page only. A drf-spectacular-sidecar
    # upgrade may change the first: the browser test then reports the violation. Its search
    # runs in a worker made from a blob: URL.
    csp_allow = {
        "style-src": (
            "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
        ),
        "worker-src": ("blob:",),
    }

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response.csp_allow = self.csp_allow
        return response
