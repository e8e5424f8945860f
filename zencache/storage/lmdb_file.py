"""An LMDB data file read with plain file reads, page by page: what `index_check`
looks at where LMDB itself would abort (it trusts every page it maps).

Reading here can never take the process down: every page is read with `os.pread`
and checked before anything in it is followed, so a damaged page is reported (and
its subtree skipped), never dereferenced. Two uses: the free-page list a writer
reads (LMDB reads it only inside a write transaction, so a read-through cannot
vouch for it), and salvage, which collects every entry reachable through sound
pages of either of the last two commits.

Layout (LMDB 0.9, 64-bit builds): a page starts with its number (8 bytes), 2
bytes of padding, 2 of flags, and either the bounds of its free space (lower,
upper: 2 bytes each) or, on an overflow page, how many pages it spans (4). A
branch or leaf page then holds 2-byte offsets of its nodes; a node is 8 bytes
(data size or child page number, flags, key size) then the key, then the data.
Imports nothing of ours.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = 0xBEEFC0DE
HEADER = 16  # page header
NODE = 8  # node header
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
NO_PAGE = 0xFFFFFFFFFFFFFFFF  # an empty database's root
# Offsets inside a meta page: page header, then mm_magic, mm_version, mm_address,
# mm_mapsize, two MDB_db records (free pages, then the main database; 48 bytes
# each, the first's md_pad holding the page size), mm_last_pg, mm_txnid.
_DB_AT = HEADER + 24
_DB = struct.Struct(
    "<IHHQQQQQ"
)  # md_pad, flags, depth, branch, leaf, overflow pages, entries, root
_LAST_PG_AT = _DB_AT + 2 * _DB.size
_MAX_DEPTH = 32  # LMDB's cursor stack: no tree is deeper


@dataclass(frozen=True, slots=True)
class Meta:
    """One of the two meta pages: a commit (`txnid`) and the roots it left."""

    txnid: int
    last_pg: int  # the highest page number the commit uses
    free_root: int
    main_root: int


@dataclass(slots=True)
class Walk:
    """What a tree walk found unreadable: page numbers whose subtree was skipped
    (with why), and entries whose value could not be read; and the pages it read."""

    bad_pages: dict[int, str] = field(default_factory=dict)
    bad_entries: int = 0
    reached: set[int] = field(default_factory=set)


class DataFile:
    """A data.mdb opened for plain reads. `metas`: its sound meta pages, newest first."""

    def __init__(self, fd: int, size: int, psize: int, metas: list[Meta]) -> None:
        self.fd, self.size, self.psize, self.metas = fd, size, psize, metas

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> DataFile | None:
        """None when the file is missing, empty, or has no sound meta page."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, 4096, 0)
            if len(head) < _LAST_PG_AT + 16:
                raise ValueError("no meta page")
            (psize,) = struct.unpack_from("<I", head, _DB_AT)
            if not 512 <= psize <= 65536 or psize & (psize - 1):
                raise ValueError("no page size")
            metas = [m for m in (_meta(head), _meta(os.pread(fd, psize, psize))) if m]
            if not metas:
                raise ValueError("no sound meta page")
        except (OSError, ValueError):
            os.close(fd)
            return None
        metas.sort(key=lambda m: m.txnid, reverse=True)
        return cls(fd, size, psize, metas)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> DataFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def short_by(self) -> int:
        """Bytes the file lacks of the pages its newest commit counts."""
        return max(0, (self.metas[0].last_pg + 1) * self.psize - self.size)

    def page(self, pgno: int, meta: Meta) -> bytes | None:
        if not 2 <= pgno <= meta.last_pg:
            return None
        data = os.pread(self.fd, self.psize, pgno * self.psize)
        return data if len(data) == self.psize else None

    def entries(
        self, root: int, meta: Meta, walk: Walk, *, values: bool = True, integers: bool = False
    ) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, node flags) of every leaf node reachable from `root` through
        pages that look sound, in key order; a page that does not (wrong number,
        kind, bounds, key order, or keys outside what its parent says it holds) is
        noted in `walk` and its subtree skipped. `values=False` yields b"" values;
        `integers`: keys are native unsigned integers (the free-page list's)."""
        if root == NO_PAGE:
            return
        seen: set[int] = set()
        # (page, depth, lowest key, key it must stay below (None: no bound))
        stack: list[tuple[int, int, bytes, bytes | None]] = [(root, 0, b"", None)]
        while stack:
            pgno, depth, low, high = stack.pop()
            if pgno in seen:
                walk.bad_pages[pgno] = "reached twice"
                continue
            seen.add(pgno)
            page = self.page(pgno, meta)
            problem, nodes = ("beyond the file", []) if page is None else _nodes(page, pgno)
            if not problem and depth >= _MAX_DEPTH:
                problem = "too deep"
            if not problem and page is not None:
                problem = _order(nodes, low, high, page[10] & P_BRANCH != 0, integers)
            if problem or page is None:
                walk.bad_pages[pgno] = problem
                continue
            if page[10] & P_BRANCH:
                children = []
                for i, ((_, key), child, _) in enumerate(nodes):
                    upper = nodes[i + 1][0][1] if i + 1 < len(nodes) else high
                    children.append((child, depth + 1, low if i == 0 else key, upper))
                stack.extend(reversed(children))  # leftmost child first
                continue
            walk.reached.add(pgno)
            for node, size, flags in nodes:
                start = _node_data(page, node, size, flags)
                if start is None:
                    walk.bad_entries += 1
                    continue
                if not values:
                    yield node[1], b"", flags
                    continue
                value = self._value(page, start, size, flags, meta)
                if value is None:
                    walk.bad_entries += 1
                    continue
                yield node[1], value, flags

    def _value(self, page: bytes, start: int, size: int, flags: int, meta: Meta) -> bytes | None:
        if not flags & F_BIGDATA:
            return page[start : start + size]
        (first,) = struct.unpack_from("<Q", page, start)
        head = self.page(first, meta)
        if head is None:
            return None
        number, _, kind, pages = struct.unpack_from("<QHHI", head, 0)
        if (
            number != first
            or not kind & P_OVERFLOW
            or pages < 1
            or first + pages - 1 > meta.last_pg
            or size > pages * self.psize - HEADER
        ):
            return None
        value = os.pread(self.fd, size, first * self.psize + HEADER)
        return value if len(value) == size else None

    def loose_leaves(self, meta: Meta, skip: set[int]) -> Iterator[list[tuple[bytes, bytes]]]:
        """The entries of every page up to the commit's last that looks like a sound
        leaf but is not in `skip` (the leaves the tree walks reached): leaves cut off
        from their tree by a damaged branch page, and also stale copies of pages
        (freed, or of an older commit). Which table one belongs to, and whether
        its entries still hold, is for the caller to judge from what they are."""
        for pgno in range(2, meta.last_pg + 1):
            if pgno in skip:
                continue
            page = self.page(pgno, meta)
            if page is None or not page[10] & P_LEAF or page[10] & P_BRANCH:
                continue
            problem, nodes = _nodes(page, pgno)
            if problem or not nodes or _order(nodes, b"", None, False, False):
                continue
            entries = []
            for node, size, flags in nodes:
                start = _node_data(page, node, size, flags)
                value = None if start is None else self._value(page, start, size, flags, meta)
                if value is None or flags & (F_SUBDATA | F_DUPDATA):
                    break
                entries.append((node[1], value))
            else:
                yield entries

    def databases(self, meta: Meta, walk: Walk) -> dict[bytes, tuple[int, int]]:
        """The named databases of a commit: name -> (root page, flags)."""
        found = {}
        for name, value, flags in self.entries(meta.main_root, meta, walk):
            if flags & F_SUBDATA and len(value) == _DB.size:
                record = _DB.unpack(value)
                found[name] = (record[7], record[1])
        return found


def free_list_problem(data: DataFile, meta: Meta) -> str:
    """What is wrong with the newest commit's free-page list ("" when nothing).

    LMDB reads it only to reuse pages, inside a write transaction: a record whose
    count runs past its end, or names a page the file does not have, makes that
    writer read past what is mapped. Each record is a commit id (8 bytes) -> a count
    then that many page numbers (8 bytes each)."""
    walk = Walk()
    for key, value, _ in data.entries(meta.free_root, meta, walk, integers=True):
        if len(key) != 8 or len(value) < 8 or len(value) % 8:
            return "a record of its free-page list has the wrong size"
        count = int.from_bytes(value[:8], "little")
        if count > len(value) // 8 - 1:
            return "a record of its free-page list counts more pages than it holds"
        pages = struct.unpack_from(f"<{count}Q", value, 8)
        if any(not 2 <= page <= meta.last_pg for page in pages):
            return "its free-page list names a page past the end of the index"
    if walk.bad_pages:
        pgno, why = next(iter(walk.bad_pages.items()))
        return f"page {pgno} of its free-page list is damaged: {why}"
    if walk.bad_entries:
        return "a record of its free-page list cannot be read"
    return ""


def _meta(page: bytes) -> Meta | None:
    if len(page) < _LAST_PG_AT + 16 or struct.unpack_from("<I", page, HEADER)[0] != MAGIC:
        return None
    free = _DB.unpack_from(page, _DB_AT)
    main = _DB.unpack_from(page, _DB_AT + _DB.size)
    last_pg, txnid = struct.unpack_from("<QQ", page, _LAST_PG_AT)
    return Meta(txnid, last_pg, free[7], main[7])


# A node as parsed: ((offset of the key, key), data size or child page, node flags).
_Node = tuple[tuple[int, bytes], int, int]


def _nodes(page: bytes, pgno: int) -> tuple[str, list[_Node]]:
    """The nodes of a branch or leaf page, or why the page cannot be one."""
    number, _, kind, lower, upper = struct.unpack_from("<QHHHH", page, 0)
    psize = len(page)
    if number != pgno:
        return f"holds page number {number}", []
    if bool(kind & P_BRANCH) == bool(kind & P_LEAF) or kind & (P_OVERFLOW | P_META | P_LEAF2):
        return f"flags {kind:#x}", []
    if not HEADER < lower <= upper <= psize or (lower - HEADER) % 2:
        return "bad bounds", []
    count = (lower - HEADER) // 2
    nodes: list[_Node] = []
    for offset in struct.unpack_from(f"<{count}H", page, HEADER):
        if not upper <= offset <= psize - NODE:
            return "node offset out of bounds", []
        lo, hi, flags, ksize = struct.unpack_from("<HHHH", page, offset)
        if offset + NODE + ksize > psize:
            return "key out of bounds", []
        key = page[offset + NODE : offset + NODE + ksize]
        if kind & P_BRANCH:
            nodes.append(((offset, key), lo | hi << 16 | flags << 32, 0))
        else:
            nodes.append(((offset, key), lo | hi << 16, flags))
    return "", nodes


def _order(nodes: list[_Node], low: bytes, high: bytes | None, branch: bool, integers: bool) -> str:
    """Keys strictly increasing, within [low, high) (a branch's first key is empty)."""
    if branch and len(nodes) < 2:
        return "a branch with one child"
    keys = [key for (_, key), _, _ in nodes][1 if branch else 0 :]
    if integers:  # little-endian numbers: reversed, their bytes sort as the numbers do
        if any(len(key) != 8 for key in keys):
            return "a key of the wrong size"
        keys = [key[::-1] for key in keys]
        low, high = low[::-1], None if high is None else high[::-1]
    for before, after in itertools.pairwise(keys):
        if not before < after:
            return "keys out of order"
    if keys and (keys[0] < low or (high is not None and keys[-1] >= high)):
        return "keys outside the range its parent gives"
    return ""


def _node_data(page: bytes, key: tuple[int, bytes], size: int, flags: int) -> int | None:
    """Where a leaf node's data starts, or None when it does not fit in the page."""
    offset, name = key
    start = offset + NODE + len(name)
    stored = 8 if flags & F_BIGDATA else size
    if flags & F_DUPDATA or start + stored > len(page):
        return None
    return start
