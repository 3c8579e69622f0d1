"""What gunicorn serves: `gunicorn service.wsgi:app`."""

from __future__ import annotations

from actors.broker import build_broker, build_redis
from actors.export import enqueue_export
from actors.memory import keep_large_buffers
from service import logs
from service.app import create_app
from service.settings import Settings
from service.wiring import build_records, build_storage

# Uploads pass through buffers of a mebibyte; untuned, glibc maps them afresh for every request
# (1,500 page faults per 4 MB upload, measured), tuned it reuses them (2).
keep_large_buffers()
settings = Settings.from_env()
logs.configure(settings.log_level)
_client = build_redis(settings.redis_url)
_broker = build_broker(
    _client, namespace=settings.redis_namespace, heartbeat_timeout_ms=settings.worker_heartbeat_timeout_ms
)
app = create_app(
    settings,
    records=build_records(_client, settings),
    storage=build_storage(settings),
    enqueue=lambda job_id, queue: enqueue_export(_broker, job_id, queue),
)
