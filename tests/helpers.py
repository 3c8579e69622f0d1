"""Small helpers shared by tests: real sample files and multipart bodies."""

from __future__ import annotations

import io
import uuid
from typing import Any

from PIL import Image

RUSSIAN = "Съешь же ещё этих мягких французских булок, да выпей чаю."
GREEK = "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία."
FRENCH = "Voilà l'été, déjà à Noël."


def jpeg_bytes(width: int = 640, height: int = 480, *, quality: int = 90) -> bytes:
    """A real JPEG with a gradient and a red block in the top-left corner."""
    im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    im.paste((255, 0, 0), (0, 0, width // 4, height // 4))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(width: int = 300, height: int = 200, *, alpha: bool = True) -> bytes:
    im = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (0, 128, 255, 128) if alpha else (0, 128, 255)
    )
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def multipart(fields: list[tuple[str, str | tuple[str, bytes]]]) -> tuple[bytes, str]:
    """(body, content type) for form fields: ("name", "value") or ("name", (filename, bytes))."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields:
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            filename, data = value
            out.write(
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            out.write(data)
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            out.write(value.encode())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish_pool(client: Any, namespace: str, queues: tuple[str, ...] = ("exports", "office"),
                 capabilities: dict[str, bool] | None = None) -> Any:  # fmt: skip
    """Publish a worker pool in Redis, as a pool supervisor does, with what this machine has
    (or `capabilities`): the API offers a conversion only while a live pool can run it."""
    from actors.capabilities import Publisher
    from exporters.registry import probe_capabilities

    publisher = Publisher(client, namespace, "test-pool", queues=queues,
                          capabilities=probe_capabilities() if capabilities is None else capabilities,
                          ttl_s=3600)  # fmt: skip
    publisher.publish()
    return publisher


def wait_for_pool(base_url: str, timeout_s: float = 60, headers: dict[str, str] | None = None) -> None:
    """Until the API offers photo conversions, i.e. a worker pool has published that it runs them
    (an API and a pool started side by side come up in either order)."""
    import json
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            request = urllib.request.Request(base_url + "/v1/formats", headers=headers or {})
            with urllib.request.urlopen(request, timeout=5) as resp:
                conversions = json.loads(resp.read())["conversions"]
            if any(c["from"] == "image" and c["available"] for c in conversions):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker pool published itself to {base_url} within {timeout_s} s")
        time.sleep(0.1)


def wait_finished(records: Any, job_id: str, timeout_s: float = 20) -> Any:
    """The job's record once it has finished; fails the test if it is still open after timeout_s."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = records.get_job(job_id)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job stuck: {records.get_job(job_id)}")


def job_record_keys(client: Any, namespace: str) -> list[Any]:
    """Every job record in Redis, in either layout: `{ns}:tenant:{t}:job:{id}`, and `{ns}:job:{id}`
    as records were stored before their keys carried the tenant."""
    return [*client.scan_iter(f"{namespace}:tenant:*:job:*"), *client.scan_iter(f"{namespace}:job:*")]


def raw_job_record(client: Any, namespace: str, job_id: str) -> bytes | None:
    """A job's record as stored, found by its id through the id → tenant index."""
    tenant = client.get(f"{namespace}:job-tenant:{job_id}")
    if tenant is None:
        return None
    value: bytes | None = client.get(f"{namespace}:tenant:{tenant.decode()}:job:{job_id}")
    return value


def expire_job_record(client: Any, namespace: str, job_id: str) -> None:
    """What the end of a job's retention does to its record: the record and its index entry go."""
    tenant = client.get(f"{namespace}:job-tenant:{job_id}")
    client.delete(f"{namespace}:job-tenant:{job_id}", f"{namespace}:job:{job_id}")
    if tenant is not None:
        client.delete(f"{namespace}:tenant:{tenant.decode()}:job:{job_id}")


def problem_body(result: Any, status: int, code: str) -> dict[str, Any]:
    """The problem+json body of a test client's `result`, checked to be `status` with `code`."""
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    body = dict(result.json)
    assert body["code"] == code and body["status"] == status and body["detail"], body
    return body
