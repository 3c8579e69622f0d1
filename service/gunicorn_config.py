"""gunicorn settings that are not per-deployment (those come from `exportd serve`'s flags)."""

from service.logs import GUNICORN_LOGCONFIG

logconfig_dict = GUNICORN_LOGCONFIG
# Uploads stream through a worker thread; a slow client must not be cut off mid-upload too soon.
timeout = 120
graceful_timeout = 30
keepalive = 5
