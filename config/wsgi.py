import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# The URL map, and with it every view, serializer and schema it names, imported now: under
# gunicorn's preload once in the master, shared by the workers it forks. Imported on first
# use, it cost every worker about 0.1 s on its first request, again after each recycling
# (max_requests).
get_resolver().url_patterns  # noqa: B018
