"""`exportd export/job/formats` as a user runs them, against a live `exportd run` (both subprocesses)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pypdfium2
from PIL import Image

from tests.helpers import free_port, jpeg_bytes, png_bytes
from tests.live.conftest import Live

EXPORTD = [sys.executable, "-m", "service.cli"]


def _run(live: Live, *args: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**live.env, "EXPORTD_URL": url or live.url}
    return subprocess.run([*EXPORTD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_export_uploads_waits_and_downloads(live: Live, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(400, 300))
    (tmp_path / "b.png").write_bytes(png_bytes(200, 100, alpha=False))
    result = _run(live, "export", "a.jpg", "b.png", "--to", "pdf", "--option", "page_size=A4", "-o", "out/",
                  cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(Path("out") / "images.pdf")
    pdf = pypdfium2.PdfDocument(tmp_path / "out" / "images.pdf")
    assert len(pdf) == 2
    assert sorted(round(side) for side in pdf[0].get_size()) == [595, 842]  # A4, turned to suit the photo
    # Not a terminal: plain lines, no escape codes; what happened, step by step.
    assert "\x1b[" not in result.stderr
    assert "uploading a.jpg" in result.stderr and "succeeded" in result.stderr


def test_no_wait_prints_the_job_id_and_job_follows_it(live: Live, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    submitted = _run(
        live, "export", "a.jpg", "--to", "webp", "--option", "width=100", "--no-wait", cwd=tmp_path
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert len(job_id) == 32
    shown = _run(live, "job", job_id, "--wait", "30", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert job["id"] == job_id and job["status"] == "succeeded" and job["options"]["width"] == 100
    assert shown.stderr == ""


def test_json_output_for_scripts(live: Live, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(300, 200))
    result = _run(live, "export", "a.jpg", "--to", "png", "--option", "width=150", "--json", "-o", "o",
                  cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "succeeded" and body["files"] == [str(Path("o") / "a.png")]
    assert Image.open(tmp_path / "o" / "a.png").size == (150, 100)
    assert result.stderr == ""
    formats = _run(live, "formats", "--json", cwd=tmp_path)
    assert formats.returncode == 0 and any(
        c["to"] == "webp" for c in json.loads(formats.stdout)["conversions"]
    )


def test_a_failed_job_exits_1_with_its_sentence(live: Live, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(jpeg_bytes()[:3000])  # a JPEG cut short
    result = _run(live, "export", "broken.jpg", "--to", "png", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        '"broken.jpg" cannot be read as a JPEG image: it is damaged or incomplete' in result.stderr
        and "(corrupt_input)" in result.stderr
    )
    assert not (tmp_path / "broken.png").exists()
    job_id = next(
        line.split()[1].rstrip(":") for line in result.stderr.splitlines() if line.startswith("job ")
    )
    shown = _run(live, "job", job_id, cwd=tmp_path)
    assert shown.returncode == 1 and "error corrupt_input" in shown.stdout


def test_a_refused_request_exits_1_with_the_problem(live: Live, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    result = _run(live, "export", "a.jpg", "--to", "webp", "--option", "width=0", cwd=tmp_path)
    assert result.returncode == 1
    assert "width must be at least 1 (invalid_options)" in result.stderr


def test_usage_errors_exit_2(live: Live, tmp_path: Path) -> None:
    assert _run(live, "export", "missing.jpg", "--to", "png", cwd=tmp_path).returncode == 2
    assert _run(live, "export", "a.jpg", cwd=tmp_path).returncode == 2  # no --to
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    bad = _run(live, "export", "a.jpg", "--to", "png", "--option", "width", cwd=tmp_path)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr


def test_an_unreachable_service_exits_3(live: Live, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    nobody = f"http://127.0.0.1:{free_port()}"
    result = _run(live, "export", "a.jpg", "--to", "png", cwd=tmp_path, url=nobody)
    assert result.returncode == 3
    assert f"exportd at {nobody} cannot be reached" in result.stderr
    assert _run(live, "formats", cwd=tmp_path, url=nobody).returncode == 3


def test_ctrl_c_during_upload_stops_cleanly(live: Live, tmp_path: Path) -> None:
    # A pipe as the input: the upload stays in flight for as long as this test feeds it.
    fifo = tmp_path / "slow.jpg"
    os.mkfifo(fifo)
    env = {**live.env, "EXPORTD_URL": live.url}
    uploads_before = live.uploads()
    proc = subprocess.Popen([*EXPORTD, "export", str(fifo), "--to", "png"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        with fifo.open("wb") as feed:
            feed.write(jpeg_bytes(1600, 1200))
            feed.write(b"\0" * 1024 * 1024)
            feed.flush()
            time.sleep(1.0)  # the client is now sending, waiting for more
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "exportd: interrupted" in err and "Traceback" not in err
    assert out == ""  # no job id: no export was made
    deadline = time.monotonic() + 10  # the service notices the cut connection on its own time
    while live.uploads() != uploads_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.uploads() == uploads_before  # the half-sent file was not kept
    assert _run(live, "formats", "--json", cwd=tmp_path).returncode == 0  # the service is unharmed


def test_progress_bars_on_a_terminal(live: Live, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(1200, 900))
    leader, follower = pty.openpty()
    env = {**live.env, "EXPORTD_URL": live.url, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([*EXPORTD, "export", "a.jpg", "--to", "png", "-o", "out"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=follower)  # fmt: skip
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    proc.wait(60)
    os.close(leader)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "uploading a.jpg" in text and "downloading a.png" in text and "succeeded" in text
    assert "\x1b[" in text and "━" in text  # rich's bar, drawn in place
    assert (tmp_path / "out" / "a.png").is_file()


def test_cancel_stops_a_running_job_and_refuses_a_finished_one(live: Live, tmp_path: Path) -> None:
    from tests.service.test_cancel import _pdf

    (tmp_path / "long.pdf").write_bytes(_pdf(60))
    submitted = _run(
        live, "export", "long.pdf", "--to", "png", "--option", "dpi=300", "--no-wait", cwd=tmp_path
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    canceled = _run(live, "cancel", job_id, "--wait", "20", cwd=tmp_path)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.splitlines()[0] == f"{job_id} canceled"
    again = _run(live, "cancel", job_id, "--json", cwd=tmp_path)  # twice: harmless
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "canceled"
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    done = _run(live, "export", "a.jpg", "--to", "png", "--json", "-o", "o", cwd=tmp_path)
    finished_id = json.loads(done.stdout)["id"]
    refused = _run(live, "cancel", finished_id, cwd=tmp_path)
    assert refused.returncode == 1 and "(already_finished)" in refused.stderr
