"""A damaged index.lmdb never kills a command with a signal and never gives
"internal error": a truncated data.mdb is caught before LMDB maps it, the
maintenance commands read the index through in a child process first, and
`cache verify --repair` copies what is readable into a fresh index (objects stay;
lost entries rerun)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zencache import Cache

FLOW = """
from zencache import pipeline, step

@step
def make(i: int) -> list:
    return list(range(i * 1000, i * 1000 + 1500))  # over the inline limit (4 KiB): an object

@step
def total(values: list) -> int:
    return sum(values)

@pipeline
def many(n: int = 40):
    return [total(values=make(i=i)) for i in range(n)]
"""


def cli(cache_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zencache", "--cache-dir", str(cache_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose cache has 80 step entries and a few hundred other entries."""
    root = tmp_path_factory.mktemp("damaged-index")
    (root / "flow.py").write_text(FLOW)
    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0, done.stderr
    cache = Cache(root / "cache")
    try:
        cache.index.write(
            [("latest", f"p/step{i}".encode(), os.urandom(60).hex().encode()) for i in range(600)]
        )
    finally:
        cache.close()
    return root


def _copy(project: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(project, target)
    return target


def _one_line_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "internal error" not in done.stderr


@pytest.mark.parametrize("command", [["cache", "stats"], ["cache", "ls"], ["runs", "ls"], ["run"]])
def test_a_truncated_index_is_a_one_line_error_not_a_sigbus(
    project: Path, tmp_path: Path, command: list[str]
) -> None:
    root = _copy(project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size // 2)
    args = [*command, "flow.py:many"] if command == ["run"] else command
    done = cli(root / "cache", *args, cwd=root)
    _one_line_error(done)
    assert "truncated" in done.stderr and "verify --repair" in done.stderr


def test_verify_repair_salvages_a_truncated_index(project: Path, tmp_path: Path) -> None:
    root = _copy(project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    objects = sorted(p.name for p in (root / "cache" / "objects").rglob("*") if p.is_file())
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size * 3 // 4)

    done = cli(root / "cache", "cache", "verify", "--repair", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["salvage"] is not None
    assert Path(report["salvage"]["moved_to"]).is_dir()
    # What survives depends on where the cut fell (the salvage reads the last commit and
    # the one before, each up to the first missing page); something always does here.
    assert sum(report["salvage"]["entries"].values()) > 0, report["salvage"]
    assert report["salvage"]["entries"]["steps"] <= 80

    # The new index reads cleanly, objects are all still there, and a run completes:
    # entries that were kept hit, lost ones rerun.
    assert cli(root / "cache", "cache", "verify").returncode == 0
    assert sorted(p.name for p in (root / "cache" / "objects").rglob("*") if p.is_file()) == (
        objects
    )
    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0, done.stderr


# Each case in a forked child of one driver (imports paid once), run from the work
# folder; the child reports its exit codes through a pipe, the parent how it ended.
# argv: what to copy, the work folder, the cache inside it ("." when it is the cache
# itself), a JSON file of damage cases [page, kind, garbage hex], and the sequences of
# commands (JSON) run on a fresh copy for each case.
DRIVER = r"""
import json, os, resource, shutil, sys
from zencache.cli import main

source, work, cache_at, sequences = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[5])
cache = os.path.normpath(os.path.join(work, cache_at))
with open(sys.argv[4]) as fh:
    cases = json.load(fh)
for page, kind, garbage in cases:
    garbage = bytes.fromhex(garbage)
    for sequence in sequences:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        with open(os.path.join(cache, "index.lmdb", "data.mdb"), "r+b") as fh:
            fh.seek(page * 4096)
            fh.write(garbage)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.chdir(work)
            os.close(read)
            os.dup2(write, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            codes = []
            for command in sequence:
                try:
                    code = main(["--cache-dir", cache, *command], standalone_mode=False)
                except SystemExit as exc:
                    code = exc.code
                except BaseException as exc:
                    code = repr(exc)
                codes.append(code or 0)
            os.write(write, ("\nCODES " + json.dumps(codes)).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            text = fh.read()
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"page": page, "kind": kind, "commands": sequence, "status": status, "text": text}), flush=True)
"""


def drive(
    python: Any,
    source: Path,
    tmp_path: Path,
    cache_at: str,
    cases: list[tuple[int, str, str]],
    sequences: list[list[list[str]]],
) -> list[dict[str, Any]]:
    """Run DRIVER over the cases; one record per case and sequence, each with `codes`."""
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = python.run(
        DRIVER,
        str(source),
        str(tmp_path / "work"),
        cache_at,
        str(tmp_path / "cases.json"),
        json.dumps(sequences),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == len(cases) * len(sequences)
    for case in records:
        text = case["text"]
        case["codes"] = json.loads(text.rpartition("CODES ")[2]) if "CODES " in text else None
    return records


COMMANDS = [
    [["cache", "verify"]],
    [["cache", "verify", "--repair"], ["cache", "verify"]],
    [["cache", "stats"]],
    [["cache", "ls"]],
    [["cache", "gc"]],
]


def test_damaged_pages_never_kill_a_command_or_give_an_internal_error(
    project: Path, tmp_path: Path, python: Any
) -> None:
    """Random bytes over pages spread through the index, one page at a time: verify,
    verify --repair (then verify: the repaired index is sound), stats, ls and gc each
    either work or give a one-line error; never a signal, never "internal error"."""
    cache_dir = project / "cache"
    pages = (cache_dir / "index.lmdb" / "data.mdb").stat().st_size // 4096
    chosen = sorted(random.Random(5).sample(range(2, pages), min(20, pages - 2)))
    rng = random.Random(5)
    cases = [(page, "random bytes", rng.randbytes(4096).hex()) for page in chosen]
    outcomes: dict[str, int] = {}
    for case in drive(python, cache_dir, tmp_path, ".", cases, COMMANDS):
        where = (case["page"], case["commands"], case["status"], case["text"][-3000:])
        assert case["status"] == 0, where  # no signal, no uncaught exception
        assert "internal error" not in case["text"], where
        codes = case["codes"]
        assert all(c in (0, 1, 2) for c in codes), where
        errors = [x for x in case["text"].splitlines() if x.startswith("error: ")]
        assert len(errors) <= len(codes), where
        if case["commands"][0] == ["cache", "verify", "--repair"]:
            assert codes == [0, 0], where  # repaired, then clean
        label = " ".join(case["commands"][0][1:])
        outcomes.setdefault(label, {})
        outcomes[label][codes[0]] = outcomes[label].get(codes[0], 0) + 1
    print(f"\n{len(chosen)} damaged pages of {pages}, exit codes: {outcomes}")


def test_the_library_refuses_a_truncated_index_in_the_user_process(
    project: Path, tmp_path: Path, python: Any
) -> None:
    root = _copy(project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    with open(data, "r+b") as fh:
        fh.truncate(8192 * 3)
    done = python.run(
        "import sys\nfrom zencache import Cache\nfrom zencache.errors import CorruptIndexError\n"
        "try:\n    Cache(sys.argv[1]).index\nexcept CorruptIndexError as exc:\n    print(exc)\n",
        str(root / "cache"),
    )
    assert done.returncode == 0, done.stderr
    assert "truncated" in done.stdout


# --- the commands that open the index in the user's process ----------------------------

PAIR = """

@step
def first(x: int) -> int:
    return x + 1

@step
def second(y: int) -> int:
    return y * 2

@pipeline
def pair(x: int = 1):
    return second(y=first(x=x))
"""

USER_COMMANDS = [
    ["run", "flow.py:many"],
    ["cache", "status", "flow.py:many"],
    ["explain", "flow.py:many", "total"],
    ["runs", "ls"],
    ["lineage", "latest:second"],
    ["audit", "latest"],
]


BUSY = r"""
import os, sys
sys.path.insert(0, os.getcwd())
from flow import pair
from zencache import Cache
cache = Cache(sys.argv[1])
for x in range(150):
    pair(x=x).run(cache=cache)
cache.index.write([("latest", f"p/step{i}".encode(), os.urandom(60).hex().encode()) for i in range(600)])
pair().run(cache=cache)
cache.close()
"""


@pytest.fixture(scope="module")
def busy_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`many` (80 step entries), 150 runs of `pair` (2 steps each: the latest is quick
    to audit) and 600 more pointers, so that every table spans several pages."""
    root = tmp_path_factory.mktemp("busy")
    (root / "flow.py").write_text(FLOW + PAIR)
    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-c", BUSY, str(root / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    return root


def _tree_pages(data_file: Path) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """Each table's tree in the newest commit, the free-page list's and the main
    table's, read with plain reads: (branch pages, leaf pages in key order, how many
    entries each leaf holds)."""
    from zencache.storage.lmdb_file import P_BRANCH, DataFile, Walk

    data = DataFile.open(data_file)
    assert data is not None

    def number(page: bytes, at: int) -> int:
        return int.from_bytes(page[at : at + 2], "little")

    with data:
        meta = data.metas[0]
        roots = {n.decode(): r for n, (r, _) in data.databases(meta, Walk()).items()}
        roots.update({"(free pages)": meta.free_root, "(main)": meta.main_root})
        found = {}
        for name, root in roots.items():
            branches: list[int] = []
            leaves: list[int] = []
            counts: list[int] = []
            stack = [root] if root <= meta.last_pg else []  # an empty table has none
            while stack:
                pgno = stack.pop()
                page = data.page(pgno, meta)
                assert page is not None
                count = (number(page, 12) - 16) // 2
                if not page[10] & P_BRANCH:
                    leaves.append(pgno)
                    counts.append(count)
                    continue
                branches.append(pgno)
                children = []
                for i in range(count):
                    at = number(page, 16 + 2 * i)
                    children.append(
                        number(page, at) | number(page, at + 2) << 16 | number(page, at + 4) << 32
                    )
                stack.extend(reversed(children))  # leftmost first: leaves in key order
            found[name] = (branches, leaves, counts)
        return found


def _damage_cases(data_file: Path, rng: random.Random) -> list[tuple[int, str, str]]:
    """(page, kind, its new bytes in hex), each table's tree damaged where LMDB trusts
    it: its root branch page with one byte of its header changed so that it seems to
    hold one child (LMDB asserts it holds two or more: abort), its second leaf in
    key order zeroed (a page lost by the disk: moving onto it, LMDB asserts it is a
    leaf), the free-page list's and main table's roots zeroed; then random bytes
    over pages picked at random, and pages overwritten by a copy of another (a
    misdirected write)."""
    original = data_file.read_bytes()
    total = len(original) // 4096
    cases = []
    for name, (branches, leaves, _) in _tree_pages(data_file).items():
        if branches:
            page = bytearray(original[branches[0] * 4096 : (branches[0] + 1) * 4096])
            page[12:14] = (16 + 2).to_bytes(2, "little")  # the lower bound of one node
            cases.append((branches[0], f"{name} root: one child", page.hex()))
        if len(leaves) > 1:
            cases.append((leaves[1], f"{name} leaf zeroed", bytes(4096).hex()))
        elif name.startswith("("):
            cases.append((leaves[0], f"{name} root zeroed", bytes(4096).hex()))
    for page in rng.sample(range(2, total), 3):
        cases.append((page, "random bytes", rng.randbytes(4096).hex()))
    for page in rng.sample(range(2, total), 3):
        other = rng.randrange(2, total)
        cases.append(
            (page, "copy of another page", original[other * 4096 : (other + 1) * 4096].hex())
        )
    return cases


def test_damaged_pages_never_kill_a_command_that_reads_the_index_in_process(
    busy_project: Path, tmp_path: Path, python: Any
) -> None:
    """run, cache status, explain, runs ls/show, lineage and audit open the index in
    the user's process. Over damaged pages that made LMDB abort (an assertion) or
    fault there, each either works or gives the one-line error naming
    `verify --repair`; never a signal, never "internal error"."""
    cases = _damage_cases(busy_project / "cache" / "index.lmdb" / "data.mdb", random.Random(3))
    sequences = [[command] for command in USER_COMMANDS]
    outcomes: dict[str, dict[str, int]] = {}
    failures = []
    for case in drive(python, busy_project, tmp_path, "cache", cases, sequences):
        code = case["codes"][0] if case["codes"] else None
        command = case["commands"][0]
        errors = [x for x in case["text"].splitlines() if x.startswith("error: ")]
        if os.WIFSIGNALED(case["status"]):
            outcome = f"killed by signal {os.WTERMSIG(case['status'])}"
        elif "internal error" in case["text"] or case["status"] != 0:
            outcome = "internal error"
        elif code == 2 and len(errors) == 1 and "verify --repair" in errors[0]:
            outcome = "one-line error"
        elif code in (0, 1) and not errors:
            outcome = f"exit {code}"
        else:
            outcome = f"unexpected: {code} {errors}"
        label = " ".join(command[:2]).removesuffix(" flow.py:many")
        outcomes.setdefault(label, {})
        outcomes[label][outcome] = outcomes[label].get(outcome, 0) + 1
        if outcome not in ("one-line error", "exit 0", "exit 1"):
            failures.append((case["page"], case["kind"], command, outcome, case["text"][-800:]))
    print(f"\n{len(cases)} damaged pages x {len(USER_COMMANDS)} commands: {outcomes}")
    assert not failures, failures[:5]


@pytest.mark.parametrize("where", ["first leaf", "root branch"])
def test_verify_repair_salvages_past_a_damaged_page_and_the_next_run_reuses_it(
    busy_project: Path, tmp_path: Path, where: str
) -> None:
    """A page of the step entries' tree zeroed: its first leaf in key order (LMDB
    cannot read the table past it; the salvage walks the tree page by page, so only
    that leaf's entries are lost), or its root branch (nothing of the table is
    reachable; the salvage finds its leaves among the pages no tree reached, and
    places them by what they hold). The next run of `many` hits every step whose
    entry survived."""
    root = _copy(busy_project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    branches, leaves, counts = _tree_pages(data)["steps"]
    assert len(leaves) > 10 and branches
    total = sum(counts)
    lost = counts[0] if where == "first leaf" else 0
    with open(data, "r+b") as fh:
        fh.seek((leaves[0] if where == "first leaf" else branches[0]) * 4096)
        fh.write(bytes(4096))

    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    _one_line_error(done)
    assert "damaged" in done.stderr and "verify --repair" in done.stderr

    objects = sorted(p.name for p in (root / "cache" / "objects").rglob("*") if p.is_file())
    assert len(objects) >= 40
    done = cli(root / "cache", "cache", "verify", "--repair", "--json")
    assert done.returncode == 0, done.stderr
    salvage = json.loads(done.stdout)["salvage"]
    assert salvage["entries"]["steps"] == total - lost, (salvage, total, lost)
    assert sorted(p.name for p in (root / "cache" / "objects").rglob("*") if p.is_file()) == (
        objects  # objects are never touched
    )
    assert salvage["damaged_pages"] >= 1
    if where == "root branch":
        assert salvage["from_loose_pages"] == total
    assert cli(root / "cache", "cache", "verify").returncode == 0

    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0, done.stderr
    executed = done.stderr.count(" executed (")
    cached = done.stderr.count(" cached (")
    assert executed + cached == 80
    assert executed <= lost and cached >= 80 - lost, (executed, cached)


def test_pipeline_run_in_the_library_raises_instead_of_aborting(
    busy_project: Path, tmp_path: Path, python: Any
) -> None:
    """The root branch of the hit table made to seem to hold one child: every
    lookup through it is an LMDB assertion (abort), which killed the user's
    interpreter at `pipeline().run()` before. Now a CorruptIndexError naming the
    way out, and the interpreter goes on."""
    root = _copy(busy_project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    branches, _, _ = _tree_pages(data)["hits"]
    assert branches
    with open(data, "r+b") as fh:
        fh.seek(branches[0] * 4096 + 12)
        fh.write((16 + 2).to_bytes(2, "little"))
    code = (
        "import os, sys\nsys.path.insert(0, os.getcwd())\nfrom flow import many\n"
        "from zencache import Cache\nfrom zencache.errors import CorruptIndexError\n"
        "try:\n    many().run(cache=Cache(sys.argv[1]))\n"
        "except CorruptIndexError as exc:\n    print('ERROR', exc)\nprint('still here')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=root,
        env=python.env(),
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("ERROR the index at "), done.stdout
    assert "aborted" in done.stdout and "verify --repair" in done.stdout
    assert done.stdout.rstrip().endswith("still here")


def test_a_run_record_that_cannot_be_decoded_is_dropped_by_verify_repair(
    busy_project: Path, tmp_path: Path
) -> None:
    """Bytes of a run record damaged where its page still looks sound: LMDB reads it,
    decoding fails. `runs ls` names the record and `verify --repair` (it said to
    delete the whole index before); repair drops just that record (history), and
    every cached entry stays."""
    import lmdb

    root = _copy(busy_project, tmp_path)
    env = lmdb.open(str(root / "cache" / "index.lmdb"), max_dbs=16)
    with env.begin(write=True) as txn:
        runs = env.open_db(b"runs", txn=txn, create=False)
        cursor = txn.cursor(db=runs)
        assert cursor.last()  # the newest: `runs ls` shows it
        victim = bytes(cursor.key())
        count = txn.stat(runs)["entries"]
        txn.put(victim, b"\x00garbage" * 40, db=runs)
    env.close()

    done = cli(root / "cache", "runs", "ls")
    _one_line_error(done)
    assert victim.decode() in done.stderr and "verify --repair" in done.stderr

    done = cli(root / "cache", "cache", "verify")
    assert done.returncode == 1 and f"damaged run record {victim.decode()}" in done.stdout
    done = cli(root / "cache", "cache", "verify", "--repair", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["repair"]["runs"] == [victim.decode()] and not report["repair"]["steps"]

    done = cli(root / "cache", "runs", "ls", "--limit", "0", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == count - 1
    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0 and done.stderr.count(" cached (") == 80, done.stderr[-2000:]
