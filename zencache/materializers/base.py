"""BaseMaterializer: how a value becomes files and files become a value again.

A subclass writes files under `self.uri` in `save` and reads them in `load`;
zencache ingests those files into the content-addressed store. Built-ins may also
implement `dump`/`restore`, which skip the file system: bytes in, bytes out.
The seed's (ZenML's) names work as aliases: `handle_return`, `handle_input`,
`self.artifact.uri`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..errors import MaterializerError, UnsafePathError
from ..hashing import module_label
from . import registry

Files = Mapping[str, Any]  # relative path -> bytes-like
_SANDBOX_DEPTH = ("a", "b", "c", "d", "e", "f", "g", "h", "artifact")


class BaseMaterializer:
    """Subclass it, list the types it handles, and implement `save` and `load`."""

    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = ()
    # Types claimed by qualified name ("sklearn.base.BaseEstimator"), so that
    # registering them imports nothing heavy.
    ASSOCIATED_TYPE_NAMES: ClassVar[tuple[str, ...]] = ()
    # Bump when the file format changes: it enters the cache key of every step
    # whose outputs this materializer writes, and so invalidates them.
    VERSION: ClassVar[str] = "1"
    # Loading runs code from the cache (pickle, joblib): refused under
    # ZENCACHE_ALLOW_PICKLE=0.
    USES_PICKLE: ClassVar[bool] = False
    # restore() accepts any buffer, and keeps it (say, as an array's memory): large
    # files are then handed over as copy-on-write memory maps of the store's
    # chunks, not read into fresh memory (artifacts.MAP_THRESHOLD).
    MAPS_FILES: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registry.register(cls)

    def __init__(self, uri: str = "") -> None:
        self.uri = uri

    @classmethod
    def identity(cls) -> str:
        # A script's materializer is named after its file, as its steps are, so that
        # `python flow.py` and `zencache run flow.py:p` share their entries.
        return f"{module_label(cls.__module__)}:{cls.__qualname__}@{cls.VERSION}"

    @property
    def artifact(self) -> BaseMaterializer:
        """ZenML's `self.artifact.uri` is our `self.uri`."""
        return self

    # --- the API a subclass implements ------------------------------------------------

    def save(self, data: Any) -> None:
        if type(self).handle_return is BaseMaterializer.handle_return:
            raise NotImplementedError(f"{type(self).__qualname__} must implement save(data)")
        self.handle_return(data)

    def load(self, data_type: type) -> Any:
        if type(self).handle_input is BaseMaterializer.handle_input:
            raise NotImplementedError(f"{type(self).__qualname__} must implement load(data_type)")
        return self.handle_input(data_type)

    def handle_return(self, data: Any) -> None:
        """ZenML's name for save. Reached through super() it does nothing."""
        if type(self).save is not BaseMaterializer.save:
            self.save(data)

    def handle_input(self, data_type: type) -> Any:
        """ZenML's name for load. Reached through super() it returns None."""
        if type(self).load is not BaseMaterializer.load:
            return self.load(data_type)
        return None

    # --- what zencache calls ----------------------------------------------------------------

    def dump(self, data: Any) -> dict[str, Any]:
        """The files for `data`: by default, whatever `save` writes under a fresh uri.

        The uri lies a few folders deep inside a private folder, so that a write
        through `..` lands where it is seen; a save that leaves no file at all wrote
        elsewhere (an absolute path). Either fails the step rather than record an
        artifact without the value's bytes (one id for every value).
        """
        with tempfile.TemporaryDirectory(prefix="zencache-save-") as tmp:
            sandbox = Path(tmp)
            uri = sandbox.joinpath(*_SANDBOX_DEPTH)
            uri.mkdir(parents=True)
            self.uri = str(uri)
            self.save(data)
            name = type(self).__qualname__
            for dirpath, _, filenames in os.walk(sandbox):
                for found in filenames:
                    path = Path(dirpath, found)
                    if not path.is_relative_to(uri):
                        raise MaterializerError(
                            f"materializer {name} wrote {os.path.relpath(path, uri)} "
                            "outside its folder; write every file under self.uri"
                        )
            files = read_tree(uri)
            if not files:
                raise MaterializerError(
                    f"materializer {name} wrote no file under self.uri (a path outside it, "
                    "or nothing at all); write the value's files under self.uri"
                )
            return files

    def restore(self, files: Files, data_type: type) -> Any:
        """The value back from its files: by default, laid out under a fresh uri for `load`.

        The folder is removed when `load` returns, so `load` must read what it needs.
        """
        with tempfile.TemporaryDirectory(prefix="zencache-load-") as tmp:
            root = Path(tmp)
            for name, data in files.items():
                target = safe_join(root, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            self.uri = tmp
            return self.load(data_type)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, by relative POSIX path; links may not escape it."""
    files: dict[str, bytes] = {}
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            _check_link(Path(dirpath) / name, real_root)
        for name in filenames:
            path = Path(dirpath) / name
            _check_link(path, real_root)
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def safe_join(root: Path, name: str) -> Path:
    """`root / name`, refusing absolute paths and `..` that would leave `root`."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\\" in name or "\0" in name:
        raise UnsafePathError(
            f"artifact file name {name!r} would escape its folder; materializers may only "
            "write relative paths inside self.uri"
        )
    return root.joinpath(*parts)


def _check_link(path: Path, real_root: Path) -> None:
    if path.is_symlink() and not path.resolve().is_relative_to(real_root):
        raise UnsafePathError(
            f"{path.name} is a link to {path.resolve()}, outside the materializer's folder; "
            "write real files under self.uri instead"
        )
