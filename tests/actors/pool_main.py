"""A real worker pool for tests: `python -m tests.actors.pool_main CONFIG_JSON`.

The pool, its supervisor, the sweeper and the export actor are exportd's own; only the conversion
is replaced by one whose behaviour the input's file name chooses, so a test can make a job crash
its process for real (a genuine SIGSEGV on its own thread) or run long enough to be killed.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

from actors.broker import build_broker
from actors.capabilities import Availability, Publisher
from actors.export import ACTOR_OF_QUEUE, ExportTask, declare_export_actor, releaser
from actors.outcomes import JobOutcomes
from actors.pool import Pool, PoolConfig
from actors.sweeper import Sweeper
from exporters.base import Limits
from service import logs
from storage.jobs import Job, Output, RecordNotFound, Records
from storage.local import LocalStorage
from storage.tenants import Quotas, Tenants


class ScriptedTask(ExportTask):
    """ExportTask whose conversion does what the first input's name says: `segv…` crashes the
    process, `slow-N…` takes N seconds; anything else converts at once."""

    def _convert(self, job: Job) -> tuple[Output, ...]:
        name = job.inputs[0].filename
        if name.startswith("segv"):
            faulthandler._sigsegv()  # a real segmentation fault, on this thread
        if name.startswith("slow-"):
            time.sleep(float(name.split("-")[1]))
        return super()._convert(job)


def main() -> int:
    config: dict[str, Any] = json.loads(sys.argv[1])
    logs.configure(config.get("log_level", "INFO"))

    def client() -> redis.Redis:
        return redis.Redis.from_url(config["redis_url"], socket_connect_timeout=1, socket_timeout=5)

    def records_on(c: redis.Redis) -> Records:
        return Records(c, namespace=config["namespace"], retention_s=3600)

    # With "tenants": fair scheduling wired in as service/wiring.py does, the pool publishing its slots.
    fair = bool(config.get("tenants"))

    def tenants_on(records: Records) -> Tenants:
        slots = Availability(records.redis, config["namespace"]).slots
        return Tenants(records, defaults=Quotas(1000, 1000, 1000, 1 << 40), slots=slots)

    def boot() -> Any:
        c = client()
        records = records_on(c)
        broker: Any = None
        tenants = tenants_on(records)

        def release(job: Job) -> None:
            releaser(tenants, broker)(job)

        broker = build_broker(c, namespace=config["namespace"], heartbeat_timeout_ms=config["heartbeat_ms"],
                              extra_middleware=[JobOutcomes(lambda: records, frozenset(ACTOR_OF_QUEUE.values()),
                                                            release if fair else None)])  # fmt: skip
        task = ScriptedTask(records=records, storage=LocalStorage(Path(config["storage"])), limits=Limits(),
                            release=release if fair else None)  # fmt: skip
        declare_export_actor(broker, task, time_limit_s=60, max_retries=3)
        return broker

    supervisor_client = client()
    supervisor_records = records_on(supervisor_client)
    sweeper = Sweeper(
        records=supervisor_records,
        broker=build_broker(
            supervisor_client, namespace=config["namespace"], heartbeat_timeout_ms=config["heartbeat_ms"]
        ),
        actor_of_queue=ACTOR_OF_QUEUE,
        interval_s=config["sweep_s"],
        grace_s=config.get("grace_s", 60),
        tenants=tenants_on(supervisor_records) if fair else None,
    )
    publisher = None
    if fair:
        publisher = Publisher(supervisor_client, config["namespace"], "pool-main", queues=tuple(ACTOR_OF_QUEUE),
                              capabilities={}, ttl_s=3600, slots=config["processes"] * config["threads"])  # fmt: skip
        publisher.publish()

    def note_crash(job_id: str) -> None:
        with contextlib.suppress(RecordNotFound):
            supervisor_records.note_crash(job_id)

    pool_config = PoolConfig(processes=config["processes"], threads=config["threads"], poll_ms=50,
                             shutdown_timeout_s=5, run_dir=Path(config["run_dir"]),
                             sweep_interval_s=config["sweep_s"])  # fmt: skip
    return Pool(
        functools.partial(boot), pool_config, note_crash=note_crash, sweep=sweeper.sweep, publisher=publisher
    ).run()


if __name__ == "__main__":
    sys.exit(main())
