"""The service's WSGI application with bench/reference.py's bare views mounted beside the API
(same process, same settings): for bench/http_bench.py only."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

settings.ROOT_URLCONF = "bench.reference"

from config.wsgi import application  # noqa: E402, F401 - served by gunicorn
