"""A small, typed, synchronous client for exportd's HTTP API, on httpx alone.

    from exportd.client import Client

    with Client("http://127.0.0.1:8080", api_key=None) as exportd:
        job = exportd.export(["photo.jpg"], "webp", {"width": 800}, wait=True)
        paths = exportd.download(job, "out/")

Every refusal of the API is raised as ExportdError carrying the problem's stable `code` and its
sentence; a job that ends failed as JobFailed (its `code` is the job's error code); a service that
cannot be reached as ServiceUnreachable.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

__all__ = ["Client", "ExportdError", "Job", "JobFailed", "Output", "ServiceUnreachable", "Upload"]

#: Longest wait the API grants per request; longer waits are several requests.
MAX_WAIT_PER_REQUEST_S = 30.0
CHUNK_BYTES = 256 * 1024

#: Called with (bytes done, bytes in all or None when unknown).
Progress = Callable[[int, "int | None"], None]


class ExportdError(Exception):
    """The API refused a request: `code` is the problem's stable code, `message` its sentence."""

    def __init__(self, message: str, *, code: str, status: int | None = None,
                 problem: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.problem = dict(problem or {})

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class ServiceUnreachable(ExportdError):
    """No answer from the service (connection refused, timed out), or it answered 503."""


class JobFailed(ExportdError):
    """A job ended `failed`: `code` and `message` are the job's error."""

    def __init__(self, job: Job) -> None:
        code = job.error_code or "failed"
        super().__init__(job.error_message or "the export failed", code=code)
        self.job = job


@dataclass(frozen=True)
class Upload:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Upload:
        return cls(id=data["id"], filename=data["filename"], content_type=data["content_type"],
                   size=int(data["size"]), sha256=data["sha256"])  # fmt: skip


@dataclass(frozen=True)
class Output:
    name: str
    content_type: str
    size: int
    sha256: str
    url: str
    expires_at: str


@dataclass(frozen=True)
class Job:
    id: str
    status: str  # queued, running, succeeded, failed or canceled
    format: str
    inputs: tuple[Upload, ...]
    options: Mapping[str, Any]
    outputs: tuple[Output, ...]
    error_code: str | None
    error_message: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)  # the API's JSON, as received

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "canceled")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        error = data.get("error") or {}
        outputs = tuple(
            Output(
                name=o["name"],
                content_type=o["content_type"],
                size=int(o["size"]),
                sha256=o["sha256"],
                url=o["url"],
                expires_at=o["expires_at"],
            )
            for o in data.get("outputs") or ()
        )
        return cls(
            id=data["id"],
            status=data["status"],
            format=data["format"],
            inputs=tuple(Upload.from_json(u) for u in data.get("inputs") or ()),
            options=dict(data.get("options") or {}),
            outputs=outputs,
            error_code=error.get("code"),
            error_message=error.get("message"),
            raw=dict(data),
        )


def _safe_name(name: str) -> str:
    """An output's name as a file name in the download directory: no directories, no dot files."""
    base = re.sub(r"[\x00-\x1f/\\]", "_", name.rsplit("/", 1)[-1]).lstrip(".").strip()
    return base or "output"


class Client:
    """exportd over HTTP. Thread-safe like the httpx.Client under it; use one per process or per task."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        headers = {"User-Agent": "exportd-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        # The wait of a long poll comes on top of the ordinary timeout.
        self._timeout = httpx.Timeout(timeout_s, read=timeout_s + MAX_WAIT_PER_REQUEST_S)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=self._timeout,
                                  transport=transport)  # fmt: skip
        # Download links are signed and may point elsewhere (S3): they never get the API key.
        self._links = httpx.Client(timeout=self._timeout, transport=transport, follow_redirects=True)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        self._http.close()
        self._links.close()

    # -- requests -----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"exportd at {self.base_url} cannot be reached: {exc}",
                                     code="unreachable") from exc  # fmt: skip
        if response.is_success:
            return response
        raise _problem(response)

    def formats(self) -> dict[str, Any]:
        """GET /v1/formats: every conversion with its options. Raises ExportdError."""
        return dict(self._request("GET", "/v1/formats").json())

    def upload(self, file: str | os.PathLike[str] | BinaryIO, *, filename: str | None = None,
               progress: Progress | None = None, idempotency_key: str | None = None) -> Upload:  # fmt: skip
        """Upload one file (streamed, never read whole). With `idempotency_key`, sending it again
        (after a timeout, say) gives the same upload. Raises ExportdError."""
        if isinstance(file, (str, os.PathLike)):
            path = Path(file)
            with path.open("rb") as fh:
                return self.upload(fh, filename=filename or path.name, progress=progress,
                                   idempotency_key=idempotency_key)  # fmt: skip
        size = _regular_file_size(file)
        headers = {"Content-Type": "application/octet-stream"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if size is not None:
            headers["Content-Length"] = str(size)  # else chunked: a pipe's size is not known
        response = self._request("POST", "/v1/uploads", params={"filename": filename or "upload"},
                                 content=_chunks(file, size, progress), headers=headers)  # fmt: skip
        return Upload.from_json(response.json())

    def export(self, files_or_ids: Sequence[str | os.PathLike[str] | Upload], format: str,
               options: Mapping[str, Any] | None = None, *, wait: bool | float = False,
               progress: Callable[[str, int, int | None], None] | None = None,
               idempotency_key: str | None = None) -> Job:  # fmt: skip
        """Export files (paths are uploaded first; an Upload or a string that is no file is an upload id).

        `wait=True` waits until the job finishes, a number waits at most that many seconds; a job
        that ends failed raises JobFailed. With `idempotency_key`, submitting the same export again
        gives the same job (sent on the submit; pass upload ids to make the uploads count once too).
        Raises ExportdError.
        """
        ids: list[str] = []
        for item in files_or_ids:
            if isinstance(item, Upload):
                ids.append(item.id)
            elif isinstance(item, os.PathLike) or Path(item).exists():
                path = Path(item)
                step = (lambda done, total, name=path.name: progress(name, done, total)) if progress else None
                ids.append(self.upload(path, progress=step).id)
            else:
                ids.append(item)
        first_wait = MAX_WAIT_PER_REQUEST_S if wait is True else min(float(wait), MAX_WAIT_PER_REQUEST_S)
        body = {"inputs": ids, "format": format, "options": dict(options or {})}
        params = {"wait": f"{first_wait:g}"} if first_wait > 0 else {}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        job = Job.from_json(
            self._request("POST", "/v1/exports", json=body, params=params, headers=headers).json()
        )
        if not wait:
            return job
        return self.wait(job, timeout_s=None if wait is True else float(wait))

    def cancel(self, job_id: str, *, wait_s: float = 0) -> Job:
        """DELETE /v1/exports/{id}: a queued job ends canceled now; a running one stops at its next
        safe point (waiting up to wait_s, ≤ 30, for that). Canceling twice is harmless.
        Raises ExportdError (code already_finished for a job that succeeded or failed)."""
        params = {"wait": f"{min(wait_s, MAX_WAIT_PER_REQUEST_S):g}"} if wait_s > 0 else {}
        return Job.from_json(self._request("DELETE", f"/v1/exports/{job_id}", params=params).json())

    def job(self, job_id: str, *, wait_s: float = 0) -> Job:
        """GET /v1/exports/{id}, waiting up to wait_s (≤ 30) for it to finish. Raises ExportdError."""
        params = {"wait": f"{min(wait_s, MAX_WAIT_PER_REQUEST_S):g}"} if wait_s > 0 else {}
        return Job.from_json(self._request("GET", f"/v1/exports/{job_id}", params=params).json())

    def wait(self, job: Job | str, *, timeout_s: float | None = None, raise_on_failure: bool = True,
             on_poll: Callable[[Job], None] | None = None) -> Job:  # fmt: skip
        """The job once finished (long polls, no busy loop), or as it is after timeout_s.

        Raises JobFailed when it ends failed (unless raise_on_failure is False), ExportdError.
        """
        current = job if isinstance(job, Job) else self.job(job)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not current.finished:
            left = MAX_WAIT_PER_REQUEST_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            current = self.job(current.id, wait_s=min(left, MAX_WAIT_PER_REQUEST_S))
            if on_poll:
                on_poll(current)
        if raise_on_failure and current.status == "failed":
            raise JobFailed(current)
        return current

    def download(self, job: Job, directory: str | os.PathLike[str], *,
                 progress: Callable[[str, int, int | None], None] | None = None) -> list[Path]:  # fmt: skip
        """Save every output of a succeeded job into `directory`; the paths written. Raises ExportdError."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        if not job.outputs and not job.finished:
            job = self.job(job.id)
        saved = []
        for out in job.outputs:
            path = target / _safe_name(out.name)
            partial = path.with_name(path.name + ".part")
            try:
                with self._links.stream("GET", out.url) as response:
                    if not response.is_success:
                        response.read()
                        raise _problem(response)
                    done = 0
                    with partial.open("wb") as fh:
                        for chunk in response.iter_bytes(CHUNK_BYTES):
                            fh.write(chunk)
                            done += len(chunk)
                            if progress:
                                progress(out.name, done, out.size)
                partial.replace(path)
            except httpx.TransportError as exc:
                raise ServiceUnreachable(
                    f"the download of {out.name} failed: {exc}", code="unreachable"
                ) from exc
            finally:
                partial.unlink(missing_ok=True)
            saved.append(path)
        return saved


def _regular_file_size(fh: BinaryIO) -> int | None:
    try:
        stat = os.fstat(fh.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    import stat as stat_module

    return stat.st_size - fh.tell() if stat_module.S_ISREG(stat.st_mode) else None


def _chunks(fh: BinaryIO, size: int | None, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    if progress:
        progress(0, size)
    while chunk := fh.read(CHUNK_BYTES):
        done += len(chunk)
        yield chunk
        if progress:
            progress(done, size)


def _problem(response: httpx.Response) -> ExportdError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or f"http_{response.status_code}")
    message = str(body.get("detail") or body.get("title") or response.reason_phrase or "request failed")
    kind = ServiceUnreachable if response.status_code == 503 else ExportdError
    return kind(message, code=code, status=response.status_code, problem=body)
