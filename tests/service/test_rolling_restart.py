"""A rolling update of the API loses no request (real gunicorn, `exportd serve`, real Redis).

Kubernetes stops a pod in two independent steps: the endpoints controller takes the pod out of the
Service (seen by kube-proxy and ingress controllers some time later), and the kubelet runs the
preStop hook, then sends SIGTERM. gunicorn closes its listening socket at once on SIGTERM, so
without a preStop delay longer than that propagation, new connections still sent to the pod are
refused. Here a small TCP proxy plays the Service (new connections go round-robin to the current
endpoints, which change `lag` after a pod starts terminating), clients send requests continuously,
and both API pods are replaced one after the other the way a Deployment's rolling update does it
(surge one new pod, ready, then stop an old one).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import AUTH, TEST_API_KEYS
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
KEYS = "k1:" + "r" * 40
StartApi = Callable[[], tuple[subprocess.Popen[bytes], int]]
#: Seconds between a pod starting to terminate and the Service no longer sending to it.
LAG_S = 1.0


class ServiceProxy:
    """The Service: each new connection goes to the next endpoint; a refused one fails the client."""

    def __init__(self) -> None:
        self.endpoints: list[int] = []
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def set_endpoints(self, ports: list[int]) -> None:
        with self._lock:
            self.endpoints = list(ports)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            port = self.endpoints[next(self._turn) % len(self.endpoints)] if self.endpoints else None
        try:
            backend = socket.create_connection(("127.0.0.1", port), timeout=5) if port else None
        except OSError:
            backend = None
        if backend is None:
            client.close()  # like a connection refused by the pod
            return
        threading.Thread(target=_pipe, args=(backend, client), daemon=True).start()
        _pipe(client, backend)

    def close(self) -> None:
        self._listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass
class Load:
    """Clients sending GET /v1/formats through the proxy until stopped, each on a new connection."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = 4) -> None:
        for _ in range(clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                conn.request("GET", "/v1/formats", headers={"Connection": "close", **AUTH})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


@pytest.fixture
def start_api(redis_url: str, tmp_path: Path) -> Iterator[StartApi]:
    procs: list[subprocess.Popen[bytes]] = []
    namespace = f"rolling-{uuid.uuid4().hex[:8]}"

    def start() -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "EXPORTD_ENV": "production",
            "EXPORTD_SIGNING_KEYS": KEYS,
            "EXPORTD_API_KEYS": TEST_API_KEYS,
            "EXPORTD_TENANT_REQUESTS_PER_SECOND": "1000000",  # this load is not what quotas are for
            "EXPORTD_REDIS_URL": redis_url,
            "EXPORTD_REDIS_NAMESPACE": namespace,
            "EXPORTD_DATA_DIR": str(tmp_path),
            "EXPORTD_PORT": str(port),
            "EXPORTD_API_PROCESSES": "2",
            "EXPORTD_API_GRACEFUL_TIMEOUT_S": "10",
        }
        log = (tmp_path / f"api-{port}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 60
        while True:  # the readiness probe
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return proc, port
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / f"api-{port}.log"
            ).read_text()
            time.sleep(0.1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)


def rolling_update(start: StartApi, *, pre_stop_s: float) -> Load:
    pods = [start(), start()]
    proxy = ServiceProxy()
    proxy.set_endpoints([port for _, port in pods])
    load = Load(proxy.port)
    load.start()
    try:
        time.sleep(1.0)
        for old in list(pods):
            new = start()  # maxSurge 1: the new pod first, until ready
            pods.append(new)
            proxy.set_endpoints([port for _, port in pods])
            time.sleep(0.5)
            # The old pod terminates: the Service forgets it after LAG_S, while the kubelet runs
            # the preStop hook (a sleep) and then sends SIGTERM.
            pods.remove(old)
            remaining = [port for _, port in pods]
            timer = threading.Timer(LAG_S, proxy.set_endpoints, args=(remaining,))
            timer.start()
            time.sleep(pre_stop_s)
            old[0].send_signal(signal.SIGTERM)
            assert old[0].wait(30) == 0
            timer.join()
        time.sleep(1.0)
    finally:
        load.stop()
        proxy.close()
    return load


def test_a_rolling_update_with_the_charts_prestop_delay_loses_no_request(start_api: StartApi) -> None:
    # The chart's preStop delay must outlast the propagation; here 2 s against a 1 s lag.
    load = rolling_update(start_api, pre_stop_s=2 * LAG_S)
    print(f"rolling update with preStop: {load.ok} requests answered, {len(load.failures)} failed")
    assert load.ok > 100
    assert load.failures == []


def test_without_a_prestop_delay_requests_are_refused(start_api: StartApi) -> None:
    """What the chart had before: SIGTERM at once, while the Service still sends to the pod."""
    load = rolling_update(start_api, pre_stop_s=0)
    print(f"rolling update without preStop: {load.ok} requests answered, {len(load.failures)} failed")
    assert load.failures, f"{load.ok} requests, none failed: the test above could not fail"
