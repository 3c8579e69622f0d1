"""Storage keys carry the tenant (`tenants/{t}/uploads/{id}`, `tenants/{t}/outputs/{job}/{name}`); records
written before they did keep working; signed links stay bound to one file; cleanup removes both
layouts on time. On a real Redis, real storage and the real export task."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import falcon.testing
import pytest

from actors.export import ExportTask
from service.app import create_app, limits_from
from service.settings import Settings, parse_signing_keys
from storage.jobs import Job, Output, Records, Upload, new_id
from storage.local import LocalStorage
from storage.retention import cleanup
from storage.signing import Signer
from tests.conftest import TEST_KEYS
from tests.helpers import png_bytes

KEY_A = "exk_" + "a" * 43
KEY_B = "exk_" + "b" * 43
DAY = 86400


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path,
                    api_keys=f"shop:submit+read:{KEY_A},other:submit+read:{KEY_B}",
                    public_url="http://exportd.test")  # fmt: skip


@pytest.fixture
def app(settings: Settings, records: Records, storage: LocalStorage, live_pool: Any) -> Any:
    """The API, and the export task run at once for each job it queues."""
    task = ExportTask(records=records, storage=storage, limits=limits_from(settings))
    application = create_app(
        settings, records=records, storage=storage, enqueue=lambda job_id, _: task(job_id)
    )
    return falcon.testing.TestClient(application)


def _get(client: Any, url: str) -> falcon.testing.Result:
    parts = urlsplit(url)
    return client.simulate_get(parts.path, query_string=parts.query)


def _convert(client: Any, key: str) -> tuple[str, dict[str, Any]]:
    auth = {"Authorization": f"Bearer {key}"}
    upload = client.simulate_post("/v1/uploads", body=png_bytes(), headers=auth).json
    body = json.dumps({"inputs": [upload["id"]], "format": "jpeg"})
    job = client.simulate_post(
        "/v1/exports", body=body, headers={**auth, "Content-Type": "application/json"}
    ).json
    done = client.simulate_get(f"/v1/exports/{job['id']}", headers=auth).json
    assert done["status"] == "succeeded", done
    return str(upload["id"]), dict(done)


def test_uploads_and_outputs_are_stored_under_their_tenant(
    app: Any, storage: LocalStorage, records: Records
) -> None:
    upload_id, job = _convert(app, KEY_A)
    keys = {o.key for prefix in ("uploads/", "outputs/", "tenants/") for o in storage.list_keys(prefix)}
    (out,) = job["outputs"]
    assert keys == {f"tenants/shop/uploads/{upload_id}", f"tenants/shop/outputs/{job['id']}/{out['name']}"}
    assert records.get_job(job["id"]).inputs[0].key == f"tenants/shop/uploads/{upload_id}"
    assert urlsplit(out["url"]).path == f"/v1/files/tenants/shop/outputs/{job['id']}/{out['name']}"
    downloaded = _get(app, out["url"])
    assert downloaded.status_code == 200 and downloaded.content[:2] == b"\xff\xd8"


def test_a_link_is_bound_to_its_tenants_file(app: Any, storage: LocalStorage) -> None:
    _, job = _convert(app, KEY_A)
    (out,) = job["outputs"]
    # The same job id and name under another tenant, even where a file exists there: refused.
    storage.put_stream(f"tenants/other/outputs/{job['id']}/{out['name']}", io.BytesIO(b"other's bytes"))
    moved = out["url"].replace("/tenants/shop/", "/tenants/other/")
    assert _get(app, moved).status_code == 403
    legacy = out["url"].replace("/tenants/shop/outputs/", "/outputs/")
    assert _get(app, legacy).status_code == 403
    assert _get(app, out["url"]).status_code == 200


def test_records_written_before_keys_carried_the_tenant_keep_working(
    app: Any, settings: Settings, storage: LocalStorage, records: Records
) -> None:
    # An upload stored as `uploads/{id}` and recorded without storage_key, as exportd did before.
    upload_id = new_id()
    stored = storage.put_stream(f"uploads/{upload_id}", io.BytesIO(png_bytes()))
    legacy = {"id": upload_id, "filename": "a.png", "content_type": "image/png", "size": stored.size,
              "sha256": stored.sha256, "created_at": time.time(), "tenant": "shop"}  # fmt: skip
    records.redis.set(f"{records.namespace}:upload:{upload_id}", json.dumps(legacy))
    assert records.get_uploads([upload_id], tenant="shop")[0].key == f"uploads/{upload_id}"
    auth = {"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"}
    job = app.simulate_post("/v1/exports", body=json.dumps({"inputs": [upload_id], "format": "jpeg"}),
                            headers=auth).json  # fmt: skip
    done = app.simulate_get(f"/v1/exports/{job['id']}", headers=auth).json
    assert done["status"] == "succeeded", done
    # A finished job whose output was stored as `outputs/{job}/{name}`: its link still serves it.
    old = Job(id=new_id(), format="jpeg", inputs=(), options={}, created_at=time.time(), tenant="shop")
    records.create_job(old)
    put = storage.put_stream(f"outputs/{old.id}/a.jpg", io.BytesIO(b"\xff\xd8old"))
    output = Output(name="a.jpg", key=put.key, content_type="image/jpeg", size=put.size, sha256=put.sha256)
    records.finish_job(old.id, outputs=(output,))
    view = app.simulate_get(f"/v1/exports/{old.id}", headers=auth).json
    assert urlsplit(view["outputs"][0]["url"]).path == f"/v1/files/outputs/{old.id}/a.jpg"
    assert _get(app, view["outputs"][0]["url"]).content == b"\xff\xd8old"
    signer = Signer(settings.signing_keys)
    assert (
        _get(app, signer.url("", f"outputs/{old.id}/a.jpg", expires=int(time.time()) + 60)).status_code == 200
    )


def test_cleanup_removes_both_layouts_on_time_and_keeps_a_live_jobs_files(
    storage: LocalStorage, records: Records
) -> None:
    def put(key: str, age_s: float) -> None:
        storage.put_stream(key, io.BytesIO(b"data"))
        old = time.time() - age_s
        os.utime(storage.root / key, (old, old))

    put("tenants/shop/uploads/old", 8 * DAY)
    put("uploads/legacy-old", 8 * DAY)
    put("tenants/shop/uploads/live-input", 8 * DAY)
    put("tenants/shop/outputs/donejob/a.pdf", 8 * DAY)
    put("outputs/legacyjob/a.pdf", 8 * DAY)
    put("tenants/shop/outputs/livejob/a.pdf", 8 * DAY)
    put("tenants/shop/outputs/newjob/a.pdf", 60)
    put("outputs/legacy-livejob/a.pdf", 8 * DAY)
    live_input = Upload(id="live-input", filename="a.png", content_type="image/png", size=4, sha256="0" * 64,
                        created_at=time.time(), tenant="shop", storage_key="tenants/shop/uploads/live-input")  # fmt: skip
    for live in ("livejob", "legacy-livejob"):
        records.create_job(Job(id=live, format="pdf", inputs=(live_input,), options={}, created_at=time.time(),
                               tenant="shop"))  # fmt: skip
    report = cleanup(storage, records, retention_s=7 * DAY, now=time.time())
    assert (report.deleted, report.kept_for_live_jobs) == (4, 3)
    remaining = sorted(o.key for p in ("uploads/", "outputs/", "tenants/") for o in storage.list_keys(p))
    assert remaining == ["outputs/legacy-livejob/a.pdf", "tenants/shop/outputs/livejob/a.pdf",
                         "tenants/shop/outputs/newjob/a.pdf", "tenants/shop/uploads/live-input"]  # fmt: skip


def test_a_tenant_name_of_dots_alone_is_refused() -> None:
    from storage.keys import InvalidKeySpec, check_tenant

    for name in (".", ".."):
        with pytest.raises(InvalidKeySpec):
            check_tenant(name)
    assert check_tenant("a.b") == "a.b"
