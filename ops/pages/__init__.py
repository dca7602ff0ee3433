"""Pages for people (not the API), rendered from templates/ under the site's CSP (no inline
script or style): the home page and portals (``portal``), session sign-in and sign-out
(``signin``) and the hosted checkout of an offer (``checkout``). None is in the OpenAPI schema.
"""
