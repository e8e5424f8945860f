"""The remote cache over a loopback S3 server (moto's server mode, its own process),
beside the same transfers done directly with obstore, the client zencache uses.

1. cold upload of a 1 GiB artifact: zencache's `Remote.upload_artifacts` (chunks
   packed 64 to a request, 16 in flight) vs one `obstore.put` of the same bytes;
2. warm pull into an empty local store: `Remote.fetch_artifacts` (every chunk
   verified and written to the store) vs one `obstore.get` into memory;
3. a fully cached 1,000-step chain rerun from the remote on an empty local cache
   (entries only, no data), after another cache ran and published it.

    .venv/bin/python benchmarks/bench_remote.py [--mib 1024] [--steps 1000] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from zencache import Cache, pipeline, step
from zencache.materializers import registry
from zencache.materializers.artifacts import save_artifact
from zencache.storage.remote import Remote
from zencache.storage.store import ObjectStore


@step
def inc(x: int) -> int:
    return x + 1


@step
def start() -> int:
    return 0


def chain_of(steps: int):
    @pipeline(name=f"remote_chain_{steps}")
    def chain():
        value = start()
        for _ in range(steps - 1):
            value = inc(x=value)
        return value

    return chain


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = Path(sys.prefix) / "bin" / "moto_server"
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return proc, endpoint


def new_bucket(endpoint: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{name}", method="PUT")).close()
    return name


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def large(endpoint: str, mib: int, reps: int, work: Path) -> None:
    import obstore
    from obstore.store import from_url

    data = np.random.default_rng(0).integers(0, 255, size=mib << 20, dtype=np.uint8)
    local = ObjectStore(work / "source")
    record = save_artifact(local, data, registry.for_value(data))
    raw = memoryview(data).cast("B")
    ours_up, direct_up, ours_down, direct_down, direct_file = [], [], [], [], []
    for rep in range(reps):
        bucket = new_bucket(endpoint)
        remote = Remote(f"s3://{bucket}/zc", timeout=120)
        direct = from_url(
            f"s3://{bucket}/direct", client_options={"allow_http": True, "timeout": "600s"}
        )
        # Interleaved, alternating which goes first.
        pair = [
            ("ours", lambda r=remote: r.upload_artifacts(local, [record]) or sys.exit("failed")),
            ("direct", lambda d=direct: _direct_put(d, raw)),
        ]
        for name, fn in pair if rep % 2 == 0 else pair[::-1]:
            (ours_up if name == "ours" else direct_up).append(timed(fn))
        for name in ("ours", "direct") if rep % 2 == 0 else ("direct", "ours"):
            if name == "ours":
                target = ObjectStore(work / f"pull-{rep}")
                ours_down.append(
                    timed(lambda t=target, r=remote: r.fetch_artifacts(t, [record]) or sys.exit(1))
                )
                shutil.rmtree(work / f"pull-{rep}")
            else:
                direct_down.append(timed(lambda d=direct: obstore.get(d, "blob").bytes()))
                # A pull lands on disk: the direct client writing the bytes to a file.
                direct_file.append(timed(lambda d=direct: _to_file(d, work / "direct.bin")))
        remote.close()
    report("cold upload", mib, ours_up, direct_up)
    report("warm pull (direct: into memory)", mib, ours_down, direct_down)
    report("warm pull (direct: into a file)", mib, ours_down, direct_file)


def _direct_put(store, raw) -> None:
    import obstore

    try:
        obstore.put(store, "blob", raw)  # obstore's default: a multipart upload
    except FileNotFoundError:
        # moto loses a multipart upload now and then on a loaded machine: one PUT instead.
        print("(direct multipart upload failed on the server; retried as one PUT)")
        obstore.put(store, "blob", raw, use_multipart=False)


def _to_file(store, path: Path) -> None:
    import obstore

    with open(path, "wb") as fh:
        for part in obstore.get(store, "blob").stream(min_chunk_size=8 << 20):
            fh.write(part)
        fh.flush()
    path.unlink()


def report(what: str, mib: int, ours: list[float], direct: list[float]) -> None:
    o, d = statistics.median(ours), statistics.median(direct)
    print(
        f"{what} of {mib} MiB: zencache {mib / o:.0f} MiB/s ({o:.2f} s; {fmt(ours)}), "
        f"obstore directly {mib / d:.0f} MiB/s ({d:.2f} s; {fmt(direct)}); "
        f"ratio {d / o:.2f}x the direct client's throughput"
    )


def fmt(values: list[float]) -> str:
    return "runs " + ", ".join(f"{v:.2f}" for v in values)


def rerun(endpoint: str, steps: int, reps: int, work: Path) -> None:
    url = f"s3://{new_bucket(endpoint)}/zc"
    chain = chain_of(steps)
    ci = Cache(work / "ci")
    started = time.perf_counter()
    chain().run(cache=ci, remote=url)
    print(f"cold {steps}-step chain, uploading every entry: {time.perf_counter() - started:.2f} s")
    times = []
    for rep in range(reps):
        laptop = Cache(work / f"laptop-{rep}")
        started = time.perf_counter()
        run = chain().run(cache=laptop, remote=url)
        times.append(time.perf_counter() - started)
        assert run.output() == steps - 1
        assert {s.source for s in run.steps.values()} == {"remote"}
        laptop.close()
    print(
        f"fully cached {steps}-step rerun from the remote on an empty local cache: "
        f"{statistics.median(times):.3f} s median ({fmt(times)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    proc, endpoint = start_moto()
    work = Path(tempfile.mkdtemp(prefix="zc-bench-remote-"))
    try:
        if args.steps:
            rerun(endpoint, args.steps, args.reps, work)
        if args.mib:
            large(endpoint, args.mib, args.reps, work)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
