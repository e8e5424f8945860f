"""Checks of an LMDB file that must not take the caller's process down, and salvage.

LMDB 0.9 maps its file and trusts it: a file shorter than its meta page says is
a SIGBUS on the first read past its end, and a damaged branch page can trip one
of LMDB's own assertions (abort). Neither can be caught in Python. So:

- `check_length` reads the two meta pages (plain file reads) before LMDB maps
  the file; only a file shorter than the pages its newest meta counts (rare when
  sound: see `short_by`) is read through in a child first. Done on every open of
  the index;
- `walk_in_child` reads every entry of every database in a child process: an
  abort or a signal there is reported here as CorruptIndexError;
- `salvage` copies what is still readable, database by database, each in its
  own child, so damage in one loses only the entries past it.

Imports errors only (and lmdb, in the children).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptIndexError

if TYPE_CHECKING:
    import subprocess

_MAGIC = 0xBEEFC0DE
# Offsets inside a meta page on 64-bit builds: page header (16 bytes), then
# mm_magic, mm_version, mm_address, mm_mapsize, two MDB_db (48 bytes each; the
# first's md_pad holds the page size), mm_last_pg, mm_txnid.
_PSIZE_AT, _LAST_PG_AT = 16 + 24, 16 + 4 + 4 + 8 + 8 + 96
_TIMEOUT = 120.0

_WALK = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort leaves no core file
sys.path.insert(0, sys.argv[1])
import lmdb
try:
    env = lmdb.open(sys.argv[2], readonly=True, lock=False, max_dbs=64, subdir=sys.argv[3] == "1")
    with env.begin() as txn:
        for name in list(txn.cursor().iternext(values=False)):
            try:
                db = env.open_db(name, txn=txn, create=False)
            except lmdb.Error:
                continue  # a plain key of the main database, not a database
            for _ in txn.cursor(db=db).iternext():
                pass
except lmdb.Error as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
"""

_SALVAGE = r"""
import resource, struct, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
sys.path.insert(0, sys.argv[1])
import lmdb
out = sys.stdout.buffer
env = lmdb.open(sys.argv[2], readonly=True, lock=False, max_dbs=64)
with env.begin() as txn:
    db = env.open_db(sys.argv[3].encode(), txn=txn, create=False)
    for key, value in txn.cursor(db=db).iternext():
        out.write(struct.pack("<II", len(key), len(value)) + key + value)
        out.flush()  # what was read before a crash is kept
"""


def short_by(data_file: Path) -> int:
    """How many bytes `data_file` lacks of the pages its newest meta page counts (0
    when it has them all, or is no LMDB file LMDB would map: LMDB refuses those).

    A sound file may lack some: pages a commit allocated and freed again without
    writing them (LMDB's loose pages) count in that number. So a short file is a
    suspect to read through in a child (`check_length`), not damage by itself.
    """
    try:
        with open(data_file, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(4096)
            if len(head) < _LAST_PG_AT + 16:
                return 0  # new or empty: LMDB initialises it, or refuses it itself
            (psize,) = struct.unpack_from("<I", head, _PSIZE_AT)
            if not 512 <= psize <= 65536:
                return 0
            fh.seek(psize)
            second = fh.read(psize)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return 0
    newest = None
    for page in (head, second):
        if len(page) < _LAST_PG_AT + 16 or struct.unpack_from("<I", page, 16)[0] != _MAGIC:
            continue
        last_pg, txnid = struct.unpack_from("<QQ", page, _LAST_PG_AT)
        if newest is None or txnid > newest[1]:
            newest = (last_pg, txnid)
    if newest is None:
        return 0
    return max(0, (newest[0] + 1) * psize - size)


def check_length(data_file: Path, *, subdir: bool = True) -> None:
    """Before LMDB maps a file: when it is shorter than its meta page counts, read it
    through in a child (a truncated file is a SIGBUS there, not here)."""
    if short_by(data_file):
        walk_in_child(data_file.parent if subdir else data_file, subdir=subdir)


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
    done = _child(_WALK, str(path), "1" if subdir else "0")
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


def salvage(path: Path, databases: tuple[str, ...]) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every entry still readable in each named database (a database that cannot be
    opened at all gives none), from the newest commit and from the one before it.

    LMDB keeps the tree of the previous commit intact (its second meta page points
    at it: that is how a crash mid-commit leaves the last one), so when damage or
    truncation took pages the last commit wrote, the entries it left alone are
    still readable there. Where both have a key, the newest commit's value wins.
    """
    import tempfile

    found = {name: dict(_read_db(path, name)) for name in databases}
    with tempfile.TemporaryDirectory(prefix="zencache-salvage-") as tmp:
        if _previous_commit(path / "data.mdb", Path(tmp) / "data.mdb"):
            for name in databases:
                for key, value in _read_db(Path(tmp), name):
                    found[name].setdefault(key, value)
    return {name: sorted(pairs.items()) for name, pairs in found.items()}


def _previous_commit(data_file: Path, copy: Path) -> bool:
    """Copy `data_file` with its newest meta page disowned (transaction id 0), so
    that LMDB opens the commit before it. False when there is no such commit."""
    import shutil

    try:
        shutil.copyfile(data_file, copy)
        with open(copy, "r+b") as fh:
            head = fh.read(4096)
            (psize,) = struct.unpack_from("<I", head, _PSIZE_AT)
            if not 512 <= psize <= 65536:
                return False
            metas = []
            for number in (0, 1):
                fh.seek(number * psize)
                page = fh.read(psize)
                if (
                    len(page) >= _LAST_PG_AT + 16
                    and struct.unpack_from("<I", page, 16)[0] == _MAGIC
                ):
                    metas.append((struct.unpack_from("<Q", page, _LAST_PG_AT + 8)[0], number))
            if len(metas) < 2 or metas[0][0] == metas[1][0]:
                return False
            newest = max(metas)[1]
            fh.seek(newest * psize + _LAST_PG_AT + 8)
            fh.write(struct.pack("<Q", 0))
    except OSError:
        return False
    return True


def _read_db(path: Path, name: str) -> list[tuple[bytes, bytes]]:
    done = _child(_SALVAGE, str(path), name)
    pairs, data, at = [], done.stdout, 0
    while at + 8 <= len(data):
        key_len, value_len = struct.unpack_from("<II", data, at)
        end = at + 8 + key_len + value_len
        if end > len(data):
            break  # cut off mid-entry
        pairs.append((data[at + 8 : at + 8 + key_len], data[at + 8 + key_len : end]))
        at = end
    return pairs
