"""A real S3 API server on 127.0.0.1 (moto's server mode, in its own process), a
fault-injecting proxy in front of it, and remote URLs for the tests: s3:// through
the proxy (dummy credentials, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP) and file://."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_MOTO = Path(sys.prefix) / "bin" / "moto_server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    if not _MOTO.exists():
        pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
    port = _free_port()
    proc = subprocess.Popen(
        [str(_MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


class FaultProxy:
    """Forwards HTTP to moto; `mode` injects faults: ok | down | error | slow | forbidden."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.mode = "ok"
        self.delay = 3.0
        self.requests = 0
        self.puts: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if mode == "down":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode in ("error", "forbidden"):
                    status = 503 if mode == "error" else 403
                    payload = b"<Error><Code>Nope</Code></Error>"
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if mode == "slow":
                    time.sleep(proxy.delay)
                if self.command == "PUT":
                    proxy.puts.append(self.path)
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_endpoint)
    try:
        yield proxy
    finally:
        proxy.close()


def make_bucket(endpoint: str) -> str:
    name = f"zc-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    urllib.request.urlopen(request, timeout=10).close()
    return name


def point_s3_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment obstore reads: `endpoint` over plain HTTP, dummy credentials."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_remote(s3_proxy: FaultProxy, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """s3://<new bucket>/team through the fault proxy."""
    pytest.importorskip("obstore")
    bucket = make_bucket(moto_endpoint)
    point_s3_at(s3_proxy.endpoint, monkeypatch)
    for name in ("ZENCACHE_REMOTE", "ZENCACHE_REMOTE_MODE", "ZENCACHE_REMOTE_KEY"):
        monkeypatch.delenv(name, raising=False)
    return f"s3://{bucket}/team"


@pytest.fixture
def file_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("ZENCACHE_REMOTE", "ZENCACHE_REMOTE_MODE", "ZENCACHE_REMOTE_KEY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "remote"
    folder.mkdir()
    return folder.as_uri()


@pytest.fixture(params=["file", "s3"])
def remote_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs against file:// and against the S3 server."""
    return request.getfixturevalue(f"{request.param}_remote")


def remote_paths(url: str) -> list[str]:
    """What is stored on a remote, as paths relative to its root."""
    from zencache.storage.remote.backends import open_backend

    return sorted(item.path for item in open_backend(url).list(""))


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
