"""Files as inputs by content: how fast `cache status` is when nothing changed, and
how fast a changed file is hashed.

1. A folder of 10,000 files (1 GiB in all) is the input of a one-step pipeline.
   After one run, `zencache cache status` in a fresh process must answer "cached"
   from the stat memo in well under a second (goal), without reading the files.
2. A 1 GiB file whose stat fields changed (os.utime: its ctime moves, so the memo
   cannot vouch for it) must be hashed at >= 10 GB/s from the page cache (goal).

Beside each: the same work by `dvc status` (DVC's own state database keys files
by inode, mtime and size, and hashes with MD5) when `--dvc PATH` names a dvc
executable, and a plain hashing baseline (one thread reading the file with
xxh3_128, and hashlib.md5) always.

    .venv/bin/python benchmarks/bench_files.py [--files 10000] [--mib 1024] [--reps 5] [--dvc /path/to/dvc]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PYTHON, median, scratch, spread

ZENCACHE = str(Path(PYTHON).parent / "zencache")

FLOW = textwrap.dedent(
    """
    from pathlib import Path

    from zencache import pipeline, step


    @step
    def count(folder: Path) -> int:
        return sum(1 for _ in folder.iterdir())


    @step
    def size(path: Path) -> int:
        return path.stat().st_size


    @pipeline
    def folder_flow():
        return count(folder=Path("images"))


    @pipeline
    def file_flow():
        return size(path=Path("big.bin"))
    """
)


def _run(cmd: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "ZENCACHE_DIR"}
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return took


def _read_all(path: Path) -> None:
    """Bring a file into the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def plain_xxh3(path: Path) -> None:
    h = xxhash.xxh3_128()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    h.hexdigest()


def plain_md5(path: Path) -> None:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument(
        "--mib", type=int, default=1024, help="total size of the folder, and of the big file"
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dvc", default="", help="a dvc executable to compare with")
    args = parser.parse_args()

    with scratch("files") as root:
        (root / "flow.py").write_text(FLOW)
        images = root / "images"
        images.mkdir()
        total = args.mib << 20
        each = total // args.files
        block = os.urandom(each + args.files)
        started = time.perf_counter()
        for i in range(args.files):
            (images / f"{i:05d}.bin").write_bytes(block[i : i + each])
        big = root / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        print(
            f"wrote {args.files:,} files of {each:,} bytes and a {args.mib} MiB file "
            f"in {time.perf_counter() - started:.1f} s"
        )
        time.sleep(2.5)  # older than the racy window: the first run may memoize them

        # --- 1. the folder, unchanged -----------------------------------------------------
        cold = _run([ZENCACHE, "run", "flow.py:folder_flow"], root)
        print(
            f"folder: first run (hashes {args.mib} MiB in {args.files:,} files, fresh process): {cold:.2f} s"
        )
        _run([ZENCACHE, "cache", "status", "flow.py:folder_flow"], root)  # warm the page cache
        ours = [
            _run([ZENCACHE, "cache", "status", "flow.py:folder_flow"], root)
            for _ in range(args.reps)
        ]
        startup = [_run([ZENCACHE, "--help"], root) for _ in range(args.reps)]
        print(
            f"folder unchanged: zencache cache status {median(ours):.3f} s ({spread(ours)}), "
            f"of which `zencache --help` startup {median(startup):.3f} s"
        )
        sys.path.insert(0, str(root))
        os.chdir(root)
        import flow  # the scratch project's pipeline module

        from zencache import Cache
        from zencache.inspection.status import pipeline_status

        cache = Cache(root / ".zencache")
        inside = []
        for _ in range(args.reps):
            started = time.perf_counter()
            found = pipeline_status(flow.folder_flow(), cache)
            inside.append(time.perf_counter() - started)
            assert found[0].status == "cached", found
        print(
            f"folder unchanged: pipeline_status in-process (no startup) {median(inside) * 1000:.0f} ms "
            f"({spread([t * 1000 for t in inside])} ms)"
        )

        theirs: list[float] = []
        if args.dvc:
            _run([args.dvc, "init", "--no-scm", "-q"], root)
            _run([args.dvc, "config", "core.analytics", "false"], root)
            added = _run([args.dvc, "add", "-q", "images"], root)
            print(f"folder: dvc add (hashes and copies it into DVC's cache): {added:.2f} s")
            _run([args.dvc, "status", "-q"], root)
            theirs = [_run([args.dvc, "status"], root) for _ in range(args.reps)]
            print(
                f"folder unchanged: dvc status {median(theirs):.3f} s ({spread(theirs)}); "
                f"ratio {median(ours) / median(theirs):.2f}x"
            )

        # --- 2. a 1 GiB file, changed -------------------------------------------------------
        _run([ZENCACHE, "run", "flow.py:file_flow"], root)
        _read_all(big)
        from zencache.inputs.trees import file_digest

        in_process = []
        for _ in range(args.reps):
            started = time.perf_counter()
            file_digest(str(big))
            in_process.append(time.perf_counter() - started)
        gib = args.mib / 1024
        rate = (args.mib << 20) / median(in_process) / 1e9
        print(
            f"1 GiB file: zencache file digest {median(in_process) * 1000:.0f} ms "
            f"({spread([t * 1000 for t in in_process])} ms) = {rate:.1f} GB/s"
        )

        status_changed = []
        for _ in range(args.reps):
            os.utime(big)  # ctime moves: the memo cannot vouch for the file, it is hashed
            status_changed.append(_run([ZENCACHE, "cache", "status", "flow.py:file_flow"], root))
        print(
            f"1 GiB file, stat changed: zencache cache status {median(status_changed):.3f} s "
            f"({spread(status_changed)}) incl. startup {median(startup):.3f} s"
        )

        for name, fn in (("xxh3_128, one thread", plain_xxh3), ("hashlib.md5", plain_md5)):
            times = []
            for _ in range(args.reps):
                started = time.perf_counter()
                fn(big)
                times.append(time.perf_counter() - started)
            print(
                f"1 GiB file: plain {name}: {median(times) * 1000:.0f} ms = "
                f"{(args.mib << 20) / median(times) / 1e9:.1f} GB/s"
            )

        if args.dvc:
            _run([args.dvc, "add", "-q", "big.bin"], root)
            dvc_changed = []
            for _ in range(args.reps):
                os.utime(big)
                dvc_changed.append(_run([args.dvc, "status"], root))
            print(
                f"1 GiB file, stat changed: dvc status {median(dvc_changed):.3f} s "
                f"({spread(dvc_changed)}); ratio {median(status_changed) / median(dvc_changed):.2f}x"
            )
        del gib


if __name__ == "__main__":
    main()
