"""An S3-compatible server for tests: moto's emulator on 127.0.0.1, or one named by the environment.

moto (https://github.com/getmoto/moto) in server mode answers real HTTP on a free local port; it
is an emulator, not AWS. It does not verify presigned-URL signatures or expiry. To run the tests
against a store that does (MinIO, Ceph, a test bucket on AWS), set EXPORTD_TEST_S3_ENDPOINT,
EXPORTD_TEST_S3_ACCESS_KEY_ID, EXPORTD_TEST_S3_SECRET_ACCESS_KEY and optionally
EXPORTD_TEST_S3_REGION; the tests create and remove buckets named exportd-test-*.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from moto.server import ThreadedMotoServer


@dataclass(frozen=True)
class S3TestServer:
    kind: Literal["moto", "external"]
    endpoint_url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str

    @property
    def verifies_presigned_urls(self) -> bool:
        return self.kind != "moto"


@contextmanager
def s3_test_server() -> Iterator[S3TestServer]:
    """The server named by EXPORTD_TEST_S3_ENDPOINT, else a moto server stopped on exit."""
    given = os.environ.get("EXPORTD_TEST_S3_ENDPOINT")
    if given:
        yield S3TestServer(
            kind="external",
            endpoint_url=given,
            access_key_id=os.environ["EXPORTD_TEST_S3_ACCESS_KEY_ID"],
            secret_access_key=os.environ["EXPORTD_TEST_S3_SECRET_ACCESS_KEY"],
            region=os.environ.get("EXPORTD_TEST_S3_REGION", "us-east-1"),
        )
        return
    # werkzeug logs every request at INFO; keep test output to what matters.
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3TestServer(
            kind="moto",
            endpoint_url=f"http://{host}:{port}",
            access_key_id="exportd-test-key-id",
            secret_access_key="exportd-test-secret",
            region="us-east-1",
        )
    finally:
        server.stop()
        werkzeug_log.setLevel(level)
