"""Every setting of exportd: one frozen dataclass, read from `EXPORTD_*` variables in one place."""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.queues import QUEUES
from exporters.base import Limits

#: The converters' limits are declared once, in exporters.base.Limits; settings take their defaults.
_LIMITS = Limits()


class ConfigError(Exception):
    """A setting is missing or malformed; the process must not start."""


#: The environment variable of each field is EXPORTD_ + its name in upper case.
PREFIX = "EXPORTD_"

DEV_KEY_FILE = "dev-signing-key"


@dataclass(frozen=True)
class Settings:
    # -- process -------------------------------------------------------------------------------
    # "development" generates a signing key under data_dir when none is set; "production" refuses to start without one.
    env: str = field(default="production", metadata={"choices": ("development", "production")})
    # Address the API binds to.
    host: str = "127.0.0.1"
    # Port the API listens on.
    port: int = field(default=8080, metadata={"maximum": 65535})
    # Base URL clients reach the API at, used in Location headers and download links; default http://host:port.
    public_url: str = ""
    # Log level of every process (DEBUG, INFO, WARNING, ERROR).
    log_level: str = field(default="INFO", metadata={"choices": ("DEBUG", "INFO", "WARNING", "ERROR")})
    # Number of gunicorn worker processes serving the API.
    api_processes: int = 2
    # Open connections per API process (gevent worker): each being read, kept alive or waiting
    # for its job (?wait) costs a greenlet, not a thread; at most half of them wait at once.
    api_connections: int = 1000
    # Longest the API waits for the next bytes of a request (head or body), and for a whole head.
    api_read_timeout_s: int = 20
    # Slowest average a request's bytes may arrive at once its first api_read_timeout_s have passed.
    api_min_body_bytes_per_s: int = 500
    # On SIGTERM, how long the API's requests in progress get to finish before gunicorn kills its
    # processes (readiness fails at once; keep the pod's grace period above this plus its preStop delay).
    api_graceful_timeout_s: int = 30

    # -- redis ---------------------------------------------------------------------------------
    # Redis for the queue and the job records. Unset: `exportd run` starts a local one under data_dir.
    redis_url: str = ""
    # Prefix of every Redis key exportd writes (jobs, uploads and the Dramatiq queues).
    redis_namespace: str = "exportd"

    # -- storage -------------------------------------------------------------------------------
    # Where uploads and outputs live: "local" (a directory under data_dir) or "s3" (shared by every pod).
    storage: str = field(default="local", metadata={"choices": ("local", "s3")})
    # Directory for local storage, the local Redis and the development signing key.
    data_dir: Path = Path("var")
    # S3 bucket (storage=s3). Credentials come from the AWS default chain (env, web identity, instance role).
    s3_bucket: str = ""
    # Key prefix inside the bucket, so one bucket can hold several installs.
    s3_prefix: str = ""
    # Endpoint of an S3-compatible store (MinIO, Ceph); empty for AWS itself.
    s3_endpoint_url: str = ""
    # Region of the bucket; empty for the AWS default chain's region.
    s3_region: str = ""
    # "auto", "path" (most self-hosted stores) or "virtual" (bucket in the host name).
    s3_addressing_style: str = field(default="auto", metadata={"choices": ("auto", "path", "virtual")})

    # -- links ---------------------------------------------------------------------------------
    # Signing keys as "kid:secret[,kid:secret...]"; the first signs, all verify (rotation). Secret.
    signing_keys: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    # Lifetime of a download link, from the moment the job is read.
    link_ttl_s: int = 3600

    # -- limits --------------------------------------------------------------------------------
    # Largest accepted upload, per file.
    max_upload_bytes: int = 25 * 1024 * 1024
    # Most files in one export.
    max_inputs: int = 50
    # Largest JSON request body, and largest `options` part of a multipart export; refused unread above it.
    max_json_bytes: int = 1024 * 1024
    # Most pixels in one image frame, checked from the header before decoding.
    max_pixels: int = _LIMITS.max_pixels
    # Longest side of any produced image.
    max_output_side_px: int = _LIMITS.max_output_side_px
    # Most pages in one produced or read document.
    max_pages: int = _LIMITS.max_pages
    # Most pages of a table PDF made from CSV, TSV or JSON (a million rows take about 45,000).
    max_table_pages: int = _LIMITS.max_table_pages
    # Most frames decoded from one animation or multi-page image.
    max_frames: int = _LIMITS.max_frames
    # Most pixels across all decoded frames of one input (width × height × frames).
    max_total_pixels: int = _LIMITS.max_total_pixels

    # -- tenants ---------------------------------------------------------------------------------
    # "keys": every /v1/ route but the signed links needs an API key; "disabled": none does, all
    # callers are one tenant "default" (production then logs a warning at start).
    auth: str = field(default="keys", metadata={"choices": ("keys", "disabled")})
    # API keys from a Secret, as "TENANT:SCOPE+SCOPE:KEY" entries separated by commas; KEY is the
    # key (exk_...) or its hash ("sha256:<hex>"). Keys made by `exportd keys create` live in Redis.
    api_keys: str = field(default="", repr=False)
    # Default quotas of a tenant (`exportd tenants set` overrides them per tenant): requests per
    # second on /v1/ routes (a token bucket shared by every API process, bursts of one second),
    tenant_requests_per_second: int = 50
    # jobs queued or running at once (a submit past it is refused with 429),
    tenant_max_queued: int = 1000
    # jobs dispatched to the workers at once (the rest wait their turn: fair scheduling),
    tenant_max_running: int = 8
    # and bytes uploaded per UTC day.
    tenant_upload_bytes_per_day: int = 10 * 1024**3

    # -- outbound connections (webhooks, URL inputs) --------------------------------------------
    # Networks exportd may connect to although they are not public (loopback, private, link-local
    # ...), as comma-separated CIDRs, e.g. "10.20.0.0/16,fd12:3456::/48": a receiver inside the
    # cluster. Empty: public addresses only (actors/outbound.py).
    outbound_allow_nets: str = ""

    # -- jobs and workers ----------------------------------------------------------------------
    # How long job and upload records stay in Redis; download links never outlive it.
    retention_s: int = 7 * 24 * 3600
    # Longest a single conversion may run before it fails as time_limit_exceeded.
    job_time_limit_s: int = 300
    # Retries of a job after a transient fault (Redis or storage) or a bug, with exponential backoff.
    job_max_retries: int = field(default=5, metadata={"minimum": 0})
    # Queues whose worker pools scale to zero when idle (KEDA), comma-separated: the API takes their
    # jobs while no pool is live, if one served the queue within the retention period.
    scale_from_zero_queues: str = ""
    # Queues this pool consumes, comma-separated: exports (photos, documents), office (LibreOffice),
    # webhooks (deliveries, in processes of their own: webhook_processes).
    worker_queues: str = "exports,office,webhooks"
    # Worker processes in the pool.
    worker_processes: int = 2
    # Threads per worker process.
    worker_threads: int = 4
    # Memory for jobs in each worker process, in bytes; jobs wait (queued) until their estimated peak
    # fits. 0: the container's memory limit (cgroup) shared among the processes, less each one's base.
    worker_memory_bytes: int = field(default=0, metadata={"minimum": 0})
    # Longest idle poll of the queue: bounds the latency from submit to start when the pool is idle.
    worker_poll_ms: int = 50
    # A worker process silent this long is presumed dead and its unfinished messages are requeued
    # (by the next sweep: a dead worker's jobs return within this plus sweep_interval_s).
    worker_heartbeat_timeout_ms: int = 30_000
    # Port of each worker pool's /metrics (Prometheus; its processes summed, queues read from
    # Redis); it listens on `host`. 0: no metrics endpoint.
    worker_metrics_port: int = field(default=9101, metadata={"minimum": 0, "maximum": 65535})
    # How often a pool supervisor runs the sweeper (one sweep per interval across all pools): dead
    # workers' messages back to their queues, and open jobs with no message queued again.
    sweep_interval_s: int = 10
    # A job younger than this is never judged lost (the API stores a record just before its message).
    sweep_grace_s: int = 60
    # On SIGTERM, how long running jobs get to finish before their messages go back to the queue.
    worker_shutdown_timeout_s: int = 600
    # File the pool supervisor touches while all its processes live; `exportd check-worker` reads it.
    worker_alive_file: Path = Path("/tmp/exportd-worker.alive")

    # -- webhooks (Standard Webhooks) -------------------------------------------------------------
    # Seconds between the attempts of a webhook delivery that failed (not 2xx, a timeout, a connection
    # error), comma-separated, each with ±20 % jitter; after the last one it is given up. The
    # default spans about 27 hours.
    webhook_retry_schedule_s: str = "5,300,1800,7200,18000,36000,36000"
    # Longest a receiver may take to answer one delivery (connect, send and read).
    webhook_timeout_s: int = field(default=10, metadata={"maximum": 300})
    # After `exportd webhooks rotate-secret`, how long the previous secret still signs (both
    # signatures are sent, space-separated).
    webhook_secret_rotation_s: int = 24 * 3600
    # Processes of a pool that consumes the webhooks queue that deliver webhooks (apart from the
    # conversion processes: a slow receiver never holds a conversion worker).
    webhook_processes: int = 1
    # Threads per webhook process: deliveries in progress at once, per process.
    webhook_threads: int = 8

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(q.strip() for q in self.worker_queues.split(",") if q.strip())

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def webhook_retry_schedule(self) -> tuple[int, ...]:
        return parse_retry_schedule(self.webhook_retry_schedule_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, links: bool = True) -> Settings:
        """Settings from EXPORTD_* variables (`links=False`: for commands that sign none). Raises ConfigError."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        settings = cls(**values)
        settings.validate()
        if not settings.signing_keys and links:
            if not settings.development:
                raise ConfigError(
                    "EXPORTD_SIGNING_KEYS is not set. Outside development mode exportd needs a signing "
                    "key for download links: generate one with `exportd keygen` and set "
                    "EXPORTD_SIGNING_KEYS=<kid>:<secret> (or run with EXPORTD_ENV=development)."
                )
            settings = dataclasses.replace(settings, signing_keys=(_dev_signing_key(settings.data_dir),))
        return settings

    def validate(self) -> None:
        """Raises ConfigError for values out of their domain.

        Read from the declarations: every whole-number setting is at least 1 unless its field
        says otherwise (`minimum`, `maximum` in its metadata), and a setting with `choices` takes
        one of them. Rules between settings follow.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            var = PREFIX + f.name.upper()
            if f.type in ("int", int):
                low, high = f.metadata.get("minimum", 1), f.metadata.get("maximum")
                if value < low or (high is not None and value > high):
                    if high is not None:
                        raise ConfigError(f"{var} must be from {low} to {high}, not {value}")
                    raise ConfigError(
                        f"{var} must be {'positive' if low == 1 else f'at least {low}'}, not {value}"
                    )
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                listed = f"{', '.join(choices[:-1])} or {choices[-1]}"
                raise ConfigError(f"{var} must be {listed}, not {value!r}")
        if self.storage == "s3" and not self.s3_bucket:
            raise ConfigError("EXPORTD_S3_BUCKET is required when EXPORTD_STORAGE=s3")
        if self.api_keys:  # storage.keys loads the Redis client: not for `exportd check-worker` without keys
            from storage.keys import InvalidKeySpec, parse_configured_keys

            try:
                parse_configured_keys(self.api_keys)
            except InvalidKeySpec as exc:
                raise ConfigError(f"EXPORTD_API_KEYS: {exc}") from None
        if self.outbound_allow_nets.strip():  # the outbound module (ssl, email) only when there are some
            from actors.outbound import parse_allow_nets

            try:
                parse_allow_nets(self.outbound_allow_nets)
            except ValueError as exc:
                raise ConfigError(f"EXPORTD_OUTBOUND_ALLOW_NETS: {exc}") from None
        try:
            parse_retry_schedule(self.webhook_retry_schedule_s)
        except ValueError as exc:
            raise ConfigError(f"EXPORTD_WEBHOOK_RETRY_SCHEDULE_S: {exc}") from None
        unknown = set(self.queues) - set(QUEUES)
        if not self.queues or unknown:
            raise ConfigError(f"EXPORTD_WORKER_QUEUES must name queues among {', '.join(QUEUES)}")
        # In development (`exportd run`) Ctrl-C must not wait minutes: jobs cut off run again later.
        if not self.development and self.job_time_limit_s >= self.worker_shutdown_timeout_s:
            raise ConfigError(
                "EXPORTD_WORKER_SHUTDOWN_TIMEOUT_S must be longer than EXPORTD_JOB_TIME_LIMIT_S"
            )
        for kid, secret in self.signing_keys:
            if len(secret) < 32:
                raise ConfigError(f"signing key {kid!r} is too short: use at least 32 bytes of secret")

    def child_environ(self) -> dict[str, str]:
        """These settings as EXPORTD_* variables, for processes started by `exportd run`."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "signing_keys":
                out[PREFIX + "SIGNING_KEYS"] = ",".join(f"{kid}:{secret.decode()}" for kid, secret in value)
            else:
                out[PREFIX + f.name.upper()] = str(value)
        return out


def _parse(name: str, type_name: Any, raw: str) -> Any:
    var = PREFIX + name.upper()
    try:
        if name == "signing_keys":
            return parse_signing_keys(raw)
        if type_name in ("int", int):
            return int(raw.replace("_", ""))
        if name == "log_level":
            return raw.upper()
        if type_name in ("Path", Path):
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ConfigError(f"{var}: {exc}") from None


def parse_signing_keys(raw: str) -> tuple[tuple[str, bytes], ...]:
    """ "kid:secret,kid:secret" -> ((kid, secret bytes), ...). Raises ValueError."""
    keys: list[tuple[str, bytes]] = []
    for item in raw.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or not secret:
            raise ValueError("expected kid:secret pairs separated by commas")
        if not kid.isalnum():
            raise ValueError(f"key id {kid!r} must be letters and digits only")
        keys.append((kid, secret.encode()))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ValueError("key ids must be unique")
    return tuple(keys)


def parse_retry_schedule(raw: str) -> tuple[int, ...]:
    """ "5,300,1800" -> (5, 300, 1800): whole seconds, at least one, each at least 1. Raises ValueError."""
    try:
        delays = tuple(int(part.strip()) for part in raw.split(","))
    except ValueError:
        raise ValueError(f"expected whole seconds separated by commas, not {raw!r}") from None
    if not delays or any(d < 1 for d in delays):
        raise ValueError(f"every delay must be at least 1 second, not {raw!r}")
    return delays


def new_signing_key(kid: str) -> str:
    """A fresh "kid:secret" pair for EXPORTD_SIGNING_KEYS."""
    return f"{kid}:{secrets.token_urlsafe(32)}"


def _dev_signing_key(data_dir: Path) -> tuple[str, bytes]:
    """The development key under data_dir, made once; concurrent first starts agree on one key."""
    path = data_dir / DEV_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{DEV_KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_signing_key("dev") + "\n")
        try:
            os.link(tmp, path)  # atomic: the first process to link wins, the others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    ((kid, secret),) = parse_signing_keys(path.read_text().strip())
    return kid, secret
