"""Where the remote's bytes go: a few calls on paths under one URL, for every scheme.

`file://` is served here with the standard library (create-only puts by a hard
link, which fails when the name exists: two writers never both win), so it needs
no extra package. `s3://`, `gs://`, `az://` and `http(s)://` go through obstore
(`pip install 'zencache[remote]'`), chosen over fsspec by measurement
(docs/remote.md): on loopback S3, 3-6x the throughput for 128 KiB objects, 4.5x
for one large read. Credentials are the platform's usual ones (environment
variables, config files); nothing here stores any.

Every call raises RemoteUnavailable for what is not an answer (a refused
connection, a timeout, a 5xx after retries, refused credentials); an absent
object is an answer (None / False). Imports errors only.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from ...errors import RemoteError

SCHEMES = ("file", "s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "http", "https")
_INSTALL = "pip install 'zencache[remote]'"


class RemoteUnavailable(Exception):
    """The remote did not answer (down, slow, 5xx, credentials refused): not a miss."""


@dataclass(frozen=True, slots=True)
class Listed:
    path: str  # relative to the remote's root
    size: int
    modified: float  # seconds since the epoch


class Backend(Protocol):
    url: str

    def put(self, path: str, data: Any, *, create_only: bool = True) -> bool:
        """Write `data` at `path`; with `create_only`, False (and nothing written)
        when an object is already there."""
        ...

    def get(self, path: str) -> bytes | None:
        """The bytes at `path`, None when there is nothing."""
        ...

    def exists(self, path: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[Listed]: ...

    def delete(self, path: str) -> None: ...


def open_backend(url: str, *, timeout: float = 10.0) -> Backend:
    """The backend for a remote URL; RemoteError (one line, with the fix) for a bad one."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise RemoteError(
            f"remote {url!r} has no supported scheme; use s3://bucket/prefix, gs://, az://, "
            "http(s)://host/path or file:///absolute/path"
        )
    if scheme == "file":
        return FileBackend(url)
    return ObstoreBackend(url, timeout=timeout)


class FileBackend:
    """A remote on a file system path (a mounted share, or a folder in tests)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise RemoteError(
                f"remote {url!r}: a file:// URL names a local path (file:///abs/path); "
                "mount the share and name its path"
            )
        self.url = url
        self.root = Path(unquote(parsed.path))

    def _path(self, path: str) -> Path:
        return self.root / path

    def put(self, path: str, data: Any, *, create_only: bool = True) -> bool:
        target = self._path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if create_only and target.exists():
                return False
            tmp = target.parent / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                if create_only:
                    try:
                        os.link(tmp, target)  # fails when the name exists: one writer wins
                    except FileExistsError:
                        return False
                else:
                    os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            raise RemoteUnavailable(f"cannot write {target}: {exc}") from exc
        return True

    def get(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise RemoteUnavailable(f"cannot read {self._path(path)}: {exc}") from exc

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def list(self, prefix: str) -> Iterator[Listed]:
        base = self._path(prefix)
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return
        for dirpath, _, names in os.walk(folder):
            for name in sorted(names):
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                relative = full.relative_to(self.root).as_posix()
                if not relative.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = full.stat()
                    yield Listed(relative, stat.st_size, stat.st_mtime)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(path).unlink()


_FIRST_LINE = re.compile(r"^[^\n]*")


class ObstoreBackend:
    """s3://, gs://, az://, http(s):// through obstore (Rust's object_store)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        try:
            import obstore
            from obstore.store import from_url
        except ImportError:
            raise RemoteError(
                f"remote {url!r} needs obstore, which is not installed: {_INSTALL} "
                "(file:// remotes work without it)"
            ) from None
        from datetime import timedelta

        self.url = url
        self._obstore = obstore
        scheme = urlparse(url).scheme.lower()
        options: dict[str, Any] = {
            "timeout": f"{max(timeout, 0.1)}s",
            "connect_timeout": f"{max(min(timeout, 3.0), 0.1)}s",
        }
        allow_http = os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true", "yes")
        if scheme == "http" or allow_http:
            options["allow_http"] = True
        retry = {
            "max_retries": 2,
            "retry_timeout": timedelta(seconds=timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=50),
                "max_backoff": timedelta(seconds=1),
                "base": 2,
            },
        }
        self._http = scheme in ("http", "https") and not _cloud_host(url)
        try:
            # obstore types one overload per scheme; the scheme is known only at run time
            self.store = from_url(url, client_options=options, retry_config=retry)  # type: ignore[call-overload]
        except Exception as exc:
            raise RemoteError(f"cannot open remote {url!r}: {_first_line(exc)}") from exc
        self._exceptions = __import__("obstore.exceptions", fromlist=["x"])

    def _unavailable(self, action: str, path: str, exc: BaseException) -> RemoteUnavailable:
        return RemoteUnavailable(f"{action} {path} on {self.url}: {_first_line(exc)}")

    def put(self, path: str, data: Any, *, create_only: bool = True) -> bool:
        errors = self._exceptions
        if create_only and self._http:
            # A plain HTTP cache server has no conditional put: look first.
            if self.exists(path):
                return False
            create_only = False
        try:
            self._obstore.put(self.store, path, data, mode="create" if create_only else "overwrite")
        except (errors.AlreadyExistsError, errors.PreconditionError):
            return False
        except Exception as exc:
            raise self._unavailable("cannot write", path, exc) from exc
        return True

    def get(self, path: str) -> bytes | None:
        try:
            return bytes(self._obstore.get(self.store, path).bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            if isinstance(exc, self._exceptions.NotFoundError):
                return None
            raise self._unavailable("cannot read", path, exc) from exc

    def exists(self, path: str) -> bool:
        try:
            self._obstore.head(self.store, path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            if isinstance(exc, self._exceptions.NotFoundError):
                return False
            raise self._unavailable("cannot look up", path, exc) from exc
        return True

    def list(self, prefix: str) -> Iterator[Listed]:
        try:
            for batch in self._obstore.list(self.store, prefix):
                for meta in batch:
                    yield Listed(meta["path"], meta["size"], meta["last_modified"].timestamp())
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._unavailable("cannot list", prefix, exc) from exc

    def delete(self, path: str) -> None:
        try:
            self._obstore.delete(self.store, path)
        except FileNotFoundError:
            return
        except Exception as exc:
            if isinstance(exc, self._exceptions.NotFoundError):
                return
            raise self._unavailable("cannot delete", path, exc) from exc


def _cloud_host(url: str) -> bool:
    host = urlparse(url).netloc
    return any(
        part in host
        for part in (
            "amazonaws.com",
            "r2.cloudflarestorage.com",
            "blob.core.windows.net",
            "dfs.core.windows.net",
        )
    )


def _first_line(exc: BaseException) -> str:
    match = _FIRST_LINE.match(str(exc))
    text = match.group() if match else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
