"""Checks of an LMDB file that must not take the caller's process down, and salvage.

LMDB 0.9 maps its file and trusts it: a file shorter than its meta page says is
a SIGBUS on the first read past its end, and a damaged branch page can trip one
of LMDB's own assertions (abort). Neither can be caught in Python. So:

- `vouch`, on every open of the index: unless the file is in the state last found
  sound (recorded in `index.lmdb/checked` by the check itself, and by each
  process's own commits: `record_sound`), it is read through in a child
  (`walk_in_child`: an abort or a signal there is a CorruptIndexError here) and its
  free-page list, which only writers read, is checked page by page;
- `salvage` walks both last commits' trees page by page (lmdb_file.py), skipping
  damaged pages, and returns every entry still readable.

Imports errors and lmdb_file only (and lmdb, in the children).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptIndexError
from .lmdb_file import F_DUPDATA, F_SUBDATA, DataFile, Walk
from .lmdb_file import __file__ as _PAGE_READER  # loaded by the child on its own

if TYPE_CHECKING:
    import subprocess

_TIMEOUT = 120.0

# argv: lmdb's folder, the environment, "1" for a folder (else a file), lmdb_file.py.
_WALK = r"""
import importlib.util, os, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort leaves no core file
sys.path.insert(0, sys.argv[1])
import lmdb
spec = importlib.util.spec_from_file_location("zencache_lmdb_file", sys.argv[4])
pages = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pages)
subdir = sys.argv[3] == "1"
data_file = os.path.join(sys.argv[2], "data.mdb") if subdir else sys.argv[2]
lock_file = os.path.join(sys.argv[2], "lock.mdb") if subdir else sys.argv[2] + "-lock"
try:
    env = None
    if os.path.exists(lock_file):  # never created here: on a full disk, that is a SIGBUS
        try:  # a registered reader: a writer at work meanwhile reuses no page it reads
            env = lmdb.open(sys.argv[2], readonly=True, max_dbs=64, subdir=subdir, create=False)
        except lmdb.Error:  # a lock file it may not write (read-only) or a damaged one
            pass
    if env is None:
        env = lmdb.open(sys.argv[2], readonly=True, lock=False, max_dbs=64, subdir=subdir)
    with env.begin() as txn:
        for name in list(txn.cursor().iternext(values=False)):
            try:
                db = env.open_db(name, txn=txn, create=False)
            except lmdb.Error:
                continue  # a plain key of the main database, not a database
            for _ in txn.cursor(db=db).iternext():
                pass
        # The free-page list only a writer reads, walked with plain reads while this
        # transaction keeps its pages from reuse (skipped when two commits since it
        # began have overwritten both meta pages).
        data = pages.DataFile.open(data_file)
        if data is not None:
            with data:
                meta = next((m for m in data.metas if m.txnid == txn.id()), None)
                problem = meta and pages.free_list_problem(data, meta)
            if problem:
                print(problem, file=sys.stderr)
                sys.exit(4)
except lmdb.Error as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
"""


def short_by(data_file: Path) -> int:
    """How many bytes `data_file` lacks of the pages its newest meta page counts (0
    when it has them all, or is no LMDB file LMDB would map: LMDB refuses those).

    A sound file may lack some: pages a commit allocated and freed again without
    writing them (LMDB's loose pages) count in that number. So a short file is a
    suspect to read through in a child (`vouch` does), not damage by itself.
    """
    data = DataFile.open(data_file)
    if data is None:
        return 0
    with data:
        return data.short_by()


_WAY_OUT = (
    "run 'zencache cache verify --repair' to copy what is readable into a new index, or "
    "move it away or delete it: the next run starts a new one, re-executing steps once "
    "(their stored objects are reused)"
)


def _lmdb_parent() -> str:
    import lmdb

    return str(Path(lmdb.__file__).resolve().parent.parent)


def _child(code: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    # -I -S: no site, no user paths; only the lmdb package's folder is added.
    # Imported here: `import zencache` needs none of this (children are rare).
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, _lmdb_parent(), *args],
        capture_output=True,
        timeout=_TIMEOUT,
        check=False,
    )


def walk_in_child(path: Path, *, subdir: bool = True) -> None:
    """Read every entry of the LMDB environment at `path` in a child process;
    CorruptIndexError naming what happened when it cannot."""
    data_file = path / "data.mdb" if subdir else path
    if not data_file.is_file():
        return
    done = _child(_WALK, str(path), "1" if subdir else "0", _PAGE_READER)
    if done.returncode == 0:
        return
    said = done.stderr.decode(errors="replace").strip().splitlines()
    detail = said[-1] if said else ""
    if done.returncode < 0:
        try:
            import signal

            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        if name == "SIGBUS" and short_by(data_file):
            detail = f"{data_file} is truncated: {short_by(data_file)} bytes of it are missing"
        else:
            detail = f"reading it {'aborted' if name == 'SIGABRT' else 'died of ' + name}" + (
                f": {detail}" if detail else ""
            )
    raise CorruptIndexError(f"the index at {path} is damaged ({detail}); {_WAY_OUT}")


def vouch(folder: Path, *, force: bool = False) -> None:
    """Before LMDB maps `folder`/data.mdb in this process: make sure reading it cannot
    abort or fault here, unless it is the very file last found sound.

    The file's state (device, inode, size, mtime, ctime, newest commit) is compared
    with the one recorded in `folder`/checked when it was last found sound, or left
    by a zencache process's own commits (`record_sound`). When it differs (damage, a
    copy, a commit by a process that was killed before recording), the file is read
    through in a child process (`walk_in_child`: every entry through LMDB, and the
    free-page list, which only a writer reads, page by page); CorruptIndexError when
    it finds damage. `force`: check even when the state matches (maintenance).
    """
    data_file = folder / "data.mdb"
    data = DataFile.open(data_file)
    if data is None:
        return  # none yet, or empty: LMDB initialises it, or refuses it itself
    with data:
        state = _state(data)
        if not force and state is not None and _recorded(folder) == state:
            return
    walk_in_child(folder)
    if state is not None:
        _record(folder, state)


def record_sound(folder: Path, txnid: int) -> None:
    """Record the file's present state as sound when its newest commit is `txnid`,
    one this process made (from a file it found sound): then nothing but LMDB wrote
    it since. Anything else (another process committed after it) is left for the
    next `vouch` to check."""
    data = DataFile.open(folder / "data.mdb")
    if data is None:
        return
    with data:
        state = _state(data)
    if state is not None and state[-1] == txnid:
        _record(folder, state)


_STAMP = "checked"
_STAMP_SIZE = 160  # bytes: six numbers of at most 20 digits, and a tag


def _state(data: DataFile) -> tuple[int, ...] | None:
    try:
        st = os.fstat(data.fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, data.metas[0].txnid)


def _recorded(folder: Path) -> tuple[int, ...] | None:
    try:
        text = (folder / _STAMP).read_text()
        return tuple(int(part) for part in text.split()[1:])
    except (OSError, ValueError):
        return None


def _record(folder: Path, state: tuple[int, ...]) -> None:
    """Overwritten in place, always the same length: a reader that catches a write
    half done sees a state that matches nothing, and checks again (renaming a new
    file over it costs ~250 us here, this 4). A stamp that cannot be written (a
    read-only cache) only means that the next open checks again too."""
    line = ("zencache-checked/1 " + " ".join(map(str, state))).ljust(_STAMP_SIZE - 1) + "\n"
    try:
        fd = os.open(folder / _STAMP, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        return
    try:
        os.pwrite(fd, line.encode(), 0)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Salvaged:
    """What `salvage` read: each table's entries, how many damaged pages it skipped,
    and the entries of leaf pages no tree reached (`DataFile.loose_leaves`), page by
    page, for the caller to place (or not) by what they hold."""

    tables: dict[str, list[tuple[bytes, bytes]]]
    damaged_pages: int
    loose: list[list[tuple[bytes, bytes]]]


def salvage(path: Path, databases: tuple[str, ...]) -> Salvaged:
    """Every entry still readable in each named database: from the newest commit
    and from the one before it, each tree walked page by page (lmdb_file.py), past
    every page that is damaged; and, when some were, the leaves no walk reached.

    LMDB keeps the tree of the previous commit intact (its second meta page points
    at it: that is how a crash mid-commit leaves the last one), so entries under a
    page the last commit wrote, damaged since, are often still readable there.
    Where both commits have a key, the newest one's value wins. Plain reads: no
    damage can take this process down, and none stops the walk early.
    """
    found: dict[str, dict[bytes, bytes]] = {name: {} for name in databases}
    bad: set[int] = set()
    reached: set[int] = set()
    loose: list[list[tuple[bytes, bytes]]] = []
    data = DataFile.open(path / "data.mdb")
    if data is None:
        return Salvaged({name: [] for name in databases}, 0, [])
    with data:
        for meta in data.metas:  # newest first
            walk = Walk()
            roots = data.databases(meta, walk)
            for name in databases:
                root = roots.get(name.encode())
                if root is None:
                    continue
                pairs = found[name]
                for key, value, flags in data.entries(root[0], meta, walk):
                    if not flags & (F_SUBDATA | F_DUPDATA):
                        pairs.setdefault(key, value)
            for _ in data.entries(meta.free_root, meta, walk, integers=True, values=False):
                pass  # the free-page list's leaves are no table's
            bad.update(walk.bad_pages)
            reached.update(walk.reached)
        if bad:
            loose = list(data.loose_leaves(data.metas[0], reached))
    tables = {name: sorted(pairs.items()) for name, pairs in found.items()}
    return Salvaged(tables, len(bad), loose)
