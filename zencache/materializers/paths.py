"""Steps that return a path: the file or folder it names is the artifact.

A step returning a `pathlib.Path` (or `zencache.File` / `zencache.Dir`) hands
over what the path names: its bytes are ingested into the store (chunked and
deduplicated like any artifact), under the path's last name, so a downstream
step never depends on the original staying put. Loading lays the content out
once per content id under `.zencache/files/<content id>/<name>`, read-only, and
gives that path: moving or editing the original cannot change the cache.
Symbolic links inside a folder are kept as links (by target text); links that
leave the folder, FIFOs and devices are refused. Imports errors, inputs.types and
this package's base.
"""

from __future__ import annotations

import json
import mmap
import os
import pathlib
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import Any

from ..errors import MaterializerError
from ..inputs.types import Dir, File
from .base import BaseMaterializer, Files, safe_join

_META = "path.json"
_DATA = "data/"  # every file of the content, under the path's own name
LAYOUT_DIR = "files"  # beside objects/ in the cache folder


class PathMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES = (pathlib.PurePath, File, Dir)
    MAPS_FILES = True

    def dump(self, data: Any) -> dict[str, Any]:
        path = os.fspath(data)
        name = os.path.basename(os.path.normpath(os.path.abspath(path)))
        try:
            st = os.stat(path)
        except OSError as exc:
            raise MaterializerError(
                f"the step returned the path {path}, which cannot be read ({exc.strerror}); "
                "return the path of a file or folder the step wrote"
            ) from exc
        files: dict[str, Any] = {}
        meta: dict[str, Any] = {"name": name, "dirs": [], "links": {}}
        if stat.S_ISREG(st.st_mode):
            meta["kind"] = "file"
            files[_DATA + name] = _mapped(path)
        elif stat.S_ISDIR(st.st_mode):
            meta["kind"] = "dir"
            root = os.path.realpath(path)
            for folder, dirnames, filenames in os.walk(path):
                rel = os.path.relpath(folder, path)
                prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
                for d in sorted(dirnames):
                    full = os.path.join(folder, d)
                    if os.path.islink(full):
                        meta["links"][prefix + d] = _link(full, root)
                    else:
                        meta["dirs"].append(prefix + d)
                for f in sorted(filenames):
                    full = os.path.join(folder, f)
                    if os.path.islink(full):
                        meta["links"][prefix + f] = _link(full, root)
                        continue
                    mode = os.lstat(full).st_mode
                    if not stat.S_ISREG(mode):
                        raise MaterializerError(
                            f"the folder the step returned holds {full}, which is not a regular "
                            "file (a FIFO, socket or device); remove it before returning"
                        )
                    files[f"{_DATA}{name}/{prefix}{f}"] = _mapped(full)
        else:
            raise MaterializerError(
                f"the step returned the path {path}, which is not a file or folder; return "
                "the path of a file or folder the step wrote"
            )
        files[_META] = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )
        return files

    def restore(self, files: Files, data_type: type) -> Any:
        """Laid out under `self.uri` (load_artifact's folder in the cache; a fresh
        temporary folder when called directly)."""
        folder = pathlib.Path(self.uri or tempfile.mkdtemp(prefix="zencache-path-")) / "content"
        target = lay_out(folder, lambda: files)
        return as_type(target, data_type)


def layout_root(objects: pathlib.Path) -> pathlib.Path:
    return objects.parent / LAYOUT_DIR


def lay_out(folder: pathlib.Path, read_files: Callable[[], Files]) -> pathlib.Path:
    """The content's path inside `folder` (`folder/<name>`), laid out once: written to
    a temporary folder beside it, made read-only, then renamed into place."""
    existing = _existing(folder)
    if existing is not None:
        return existing
    files = read_files()
    meta = json.loads(bytes(files[_META]).decode("utf-8", "surrogatepass"))
    name = meta["name"]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    for d in meta.get("dirs", []):
        safe_join(tmp, f"{name}/{d}").mkdir(parents=True, exist_ok=True)
    if meta["kind"] == "dir":
        safe_join(tmp, name).mkdir(exist_ok=True)
    for key, data in files.items():
        if key == _META:
            continue
        target = safe_join(tmp, key.removeprefix(_DATA))
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            out.write(memoryview(data).cast("B"))
        os.chmod(target, 0o444)
    for rel, target_text in meta.get("links", {}).items():
        link = safe_join(tmp, f"{name}/{rel}")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target_text, link)
    for dirpath, dirnames, _ in os.walk(tmp, topdown=False):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o555)
    try:
        os.replace(tmp, folder)
    except OSError:
        # Another process laid it out first (the rename onto a full folder fails).
        existing = _existing(folder)
        remove_tree(tmp)
        if existing is None:
            raise
        return existing
    found = _existing(folder)
    assert found is not None
    return found


def _existing(folder: pathlib.Path) -> pathlib.Path | None:
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return folder / names[0] if len(names) == 1 else None


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a laid-out (read-only) folder: its folders are made writable first."""
    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    shutil.rmtree(path)


def as_type(path: pathlib.Path, data_type: Any) -> Any:
    """The laid-out path in the type the consumer declared (Path unless File, Dir, str)."""
    if isinstance(data_type, type):
        if issubclass(data_type, File | Dir):
            return data_type(str(path))
        if data_type is str:
            return str(path)
        if issubclass(data_type, pathlib.PurePath) and data_type not in (
            pathlib.PurePath,
            pathlib.PurePosixPath,
            pathlib.PureWindowsPath,
        ):
            return data_type(path)
    return path


def _mapped(path: str) -> Any:
    """The file's bytes without reading them into memory (a map), or b"" when empty."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _link(path: str, root: str) -> str:
    target = os.readlink(path)
    resolved = os.path.realpath(os.path.join(os.path.dirname(path), target))
    if not (resolved == root or resolved.startswith(root + os.sep)):
        raise MaterializerError(
            f"the folder the step returned holds the link {path} -> {target}, which leaves "
            "the folder; copy what it points to into the folder instead"
        )
    return target
