"""exportd.client against a live `exportd run`, and the README's Flask view that uses it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from exportd.client import Client, ExportdError, Job, JobFailed, ServiceUnreachable
from tests.helpers import free_port, jpeg_bytes, png_bytes
from tests.live.conftest import ROOT, Live


def test_export_waits_and_downloads(live: Live, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(800, 600))
    seen: list[tuple[str, int, int | None]] = []
    with Client(live.url, live.api_key) as client:
        job = client.export([photo], "webp", {"width": 200}, wait=True,
                            progress=lambda name, done, total: seen.append((name, done, total)))  # fmt: skip
        assert isinstance(job, Job) and job.status == "succeeded" and job.options["width"] == 200
        (path,) = client.download(job, tmp_path / "out")
    assert path == tmp_path / "out" / "photo.webp"
    with Image.open(path) as image:
        assert image.format == "WEBP" and image.size == (200, 150)
    assert seen[-1] == ("photo.jpg", photo.stat().st_size, photo.stat().st_size)


def test_upload_then_export_by_id_without_waiting(live: Live) -> None:
    with Client(live.url, live.api_key) as client:
        upload = client.upload(io.BytesIO(png_bytes(64, 32)), filename="logo.png")
        assert upload.content_type == "image/png" and upload.size > 0
        job = client.export([upload.id], "jpeg")
        assert job.status in ("queued", "running", "succeeded")
        done = client.wait(job.id, timeout_s=60)
        assert done.status == "succeeded" and done.outputs[0].name == "logo.jpg"


def test_refusals_carry_the_problem_code(live: Live, tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes())
    with Client(live.url, live.api_key) as client:
        with pytest.raises(ExportdError) as refused:
            client.export([photo], "webp", {"width": 0})
        assert refused.value.code == "invalid_options" and refused.value.status == 422
        assert refused.value.message == "width must be at least 1"
        with pytest.raises(ExportdError) as unknown:
            client.job("0" * 32)
        assert unknown.value.code == "not_found" and unknown.value.status == 404
        broken = tmp_path / "cut.jpg"
        broken.write_bytes(jpeg_bytes()[:3000])
        with pytest.raises(JobFailed) as failed:
            client.export([broken], "png", wait=True)
        assert failed.value.code == "corrupt_input" and failed.value.job.status == "failed"
        assert "damaged or incomplete" in failed.value.message


def test_an_unreachable_service_is_its_own_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(ServiceUnreachable) as exc:
        client.formats()
    assert exc.value.code == "unreachable"


def test_the_api_key_goes_to_the_api_and_never_to_download_links(tmp_path: Path) -> None:
    # The API has no keys yet, so this one check records what is sent instead of asking a server.
    sent: dict[str, str | None] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        sent[request.url.host] = request.headers.get("authorization")
        if request.url.host == "api.test":
            output = {"name": "a.png", "content_type": "image/png", "size": 1, "sha256": "x",
                      "url": "https://bucket.test/a.png?sig=1", "expires_at": "2030-01-01T00:00:00Z"}  # fmt: skip
            return httpx.Response(
                200, json={"id": "j", "status": "succeeded", "format": "png", "outputs": [output]}
            )
        return httpx.Response(200, content=b"x")

    with Client("https://api.test", api_key="k-1", transport=httpx.MockTransport(answer)) as client:
        client.download(client.job("j"), tmp_path)
    assert sent == {"api.test": "Bearer k-1", "bucket.test": None}


def test_the_client_imports_only_httpx() -> None:
    code = "import sys, exportd.client; print(sorted(m for m in ('PIL', 'falcon', 'redis', 'dramatiq', 'service') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_readme_flask_view_hands_over_and_returns_at_once(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTD_API_KEY", live.api_key)
    readme = (ROOT / "README.md").read_text()
    (source,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, re.S)
        if "Flask(" in block and "exportd.client" in block
    ]
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(source.replace("http://127.0.0.1:8080", live.url), "README.md", "exec"), namespace)
    app = namespace["app"]
    web = app.test_client()  # type: ignore[attr-defined]
    answer = web.post("/photos/7/export", data={"photo": (io.BytesIO(jpeg_bytes()), "cat.jpg")})
    assert answer.status_code == 202
    job_id = answer.get_json()["job"]
    bad = web.post("/photos/8/export", data={"photo": (io.BytesIO(b"\0 not a photo"), "x.bin")})
    assert bad.status_code == 400 and bad.get_json()["error"] == "unsupported_input"
    with Client(live.url, live.api_key) as client:
        assert client.wait(job_id, timeout_s=60).outputs[0].name == "cat.webp"
