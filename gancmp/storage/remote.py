"""Object storage (gs://): the one filesystem object every remote path goes through, the emulator
setup, and the one line for a remote path that cannot be used (no gcsfs, no credentials, no such
bucket).

Libraries that reach GCS by themselves read their own variables: gcsfs and google-cloud-storage
(used by tensorboardX for gs:// event files) read `STORAGE_EMULATOR_HOST`, tensorstore (used by
orbax for checkpoint arrays) reads `TENSORSTORE_GCS_HTTP_URL`. A user names an emulator with the
standard `STORAGE_EMULATOR_HOST` only; `configure_emulator` sets the rest from it, with anonymous
credentials everywhere, before any of those libraries opens a connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping
from typing import Any

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# gcsfs >= 2025.x asks the storage-control gRPC API for each bucket's layout (zonal / hierarchical
# namespace); an emulator has no such API, and every lookup stalls for a 60 s timeout
_GCSFS_LAYOUT_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"
_SCHEMES = ("gs://",)


class RemoteStorageError(Exception):
    """A remote path that cannot be used as configured: one line naming it and what to install
    or set (the CLI exits with code 2)."""


def is_remote(path: str) -> bool:
    """Whether `path` is an object-storage URL (gs://…); other "scheme://" paths are refused."""
    path = os.fspath(path)
    if path.startswith(_SCHEMES):
        return True
    if "://" in path and not path.startswith("file://"):
        raise RemoteStorageError(f"{path}: only local paths and gs:// URLs are supported")
    return False


def emulator_url(environ: MutableMapping[str, str] | None = None) -> str | None:
    """The emulator `STORAGE_EMULATOR_HOST` names, as an http URL; None when none is named."""
    host = (os.environ if environ is None else environ).get(EMULATOR_ENV, "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def configure_emulator(environ: MutableMapping[str, str] | None = None) -> str | None:
    """When `STORAGE_EMULATOR_HOST` names an emulator, points every GCS client of the process at
    it with anonymous credentials (variables the user set are kept): tensorstore's
    `TENSORSTORE_GCS_HTTP_URL` and a fixed bearer token (`GOOGLE_AUTH_TOKEN_FOR_TESTING`, so
    tensorstore asks no credential source), gcsfs's anonymous token (fsspec config) without its
    bucket-layout lookups, and google-auth's metadata-server probe off (`NO_GCE_CHECK`).
    google-cloud-storage uses anonymous credentials by itself under the variable. Idempotent;
    returns the emulator URL or None."""
    environ = os.environ if environ is None else environ
    _fsspec_defaults("use_listings_cache", False)  # other processes and tensorstore write too
    url = emulator_url(environ)
    if url is None:
        return None
    environ.setdefault("TENSORSTORE_GCS_HTTP_URL", url)
    environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "anonymous")
    environ.setdefault(_GCSFS_LAYOUT_ENV, "false")
    environ.setdefault("NO_GCE_CHECK", "true")
    environ.setdefault("GOOGLE_CLOUD_PROJECT", "emulator")
    _fsspec_defaults("token", "anon")
    return url


def _fsspec_defaults(name: str, value: Any) -> None:
    """A default argument of every gcsfs filesystem fsspec makes (etils.epath's, which orbax
    uses, included)."""
    try:
        import fsspec.config
    except ImportError:
        return
    for protocol in ("gs", "gcs"):
        fsspec.config.conf.setdefault(protocol, {}).setdefault(name, value)


_lock = threading.Lock()
_fs: Any = None
_checked: set[str] = set()


def bucket_of(path: str) -> str:
    """The bucket of a gs:// URL."""
    rest = path.split("://", 1)[1]
    return rest.split("/", 1)[0]


def strip(path: str) -> str:
    """A gs:// URL as gcsfs names it: bucket/key, without a trailing slash."""
    return path.split("://", 1)[1].rstrip("/")


def filesystem(path: str) -> Any:
    """The gcsfs filesystem for the remote `path`, once its bucket is checked: gcsfs installed,
    credentials found (none are needed with an emulator), the bucket exists. Else
    `RemoteStorageError`, one line naming the path and what to install or set."""
    global _fs
    with _lock:
        if _fs is None:
            _fs = _make_filesystem(path)
        bucket = bucket_of(path)
        if bucket not in _checked:
            _check_bucket(_fs, path, bucket)
            _checked.add(bucket)
    return _fs


def _make_filesystem(path: str) -> Any:
    emulator = configure_emulator()
    try:
        import gcsfs  # noqa: F401  (registers gs:// with fsspec)
        import gcsfs.core
    except ImportError:
        raise RemoteStorageError(
            f"{path}: gs:// paths need gcsfs, which is not installed; install gancmp's "
            "requirements (`pip install -r requirements.lock`, or `pip install gcsfs`)") from None
    if emulator is not None:
        return gcsfs.core.GCSFileSystem(token="anon", project=os.environ["GOOGLE_CLOUD_PROJECT"],
                                        use_listings_cache=False)
    _check_credentials(path)
    import fsspec

    return fsspec.filesystem("gs", token="google_default", use_listings_cache=False)


NO_CREDENTIALS = (
    "no Google Cloud credentials found; set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
    "key file, run `gcloud auth application-default login`, or run on a Cloud VM whose service "
    "account may use the bucket (for an emulator, set STORAGE_EMULATOR_HOST)")


def _check_credentials(path: str) -> None:
    """Application default credentials (key file, gcloud login, or a Cloud VM's metadata
    server) must be found, else one line saying what to set."""
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError:
        raise RemoteStorageError(f"{path}: gs:// paths need google-auth (a gcsfs dependency); "
                                 "`pip install gcsfs`") from None
    try:
        google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise RemoteStorageError(f"{path}: {NO_CREDENTIALS}") from None


def _check_bucket(fs: Any, path: str, bucket: str) -> None:
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise RemoteStorageError(
            f"{path}: bucket {bucket} does not exist; create it (`gcloud storage buckets create "
            f"gs://{bucket}`) or fix the name") from None
    except OSError as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise RemoteStorageError(f"{path}: cannot use bucket {bucket} ({reason}); check the "
                                 "credentials' access to it") from None


def forget() -> None:
    """Drops the cached filesystem and bucket checks (tests that change the environment)."""
    global _fs
    with _lock:
        _fs = None
        _checked.clear()
