"""Benchmark the HTTP client's transport: the urllib3 one (``lerowds.reader.io.http``) against the earlier
hand-written ``http.client`` one (``src/lerowds/reader/io/http.py`` at commit ``--old-commit``, loaded from
git), side by side in one run, on one loopback server and the same files. Not a test.

The server (``tests/reader/httpserver.py``) runs in its own process, so that its work does not share the
client's GIL. Each round reads every file in ``--range-mb`` ranges with ``--threads`` threads (as the
prefetcher does) into a buffer, then makes ``--small`` whole-file GETs of a 16 KB file (per-request cost);
rounds alternate old/new ``--repeats`` times (the machine is noisy: compare within one run). Reported per
transport: the median MB/s of the ranged reads, client CPU seconds per GB, and small GETs per second, and
the ratios new/old.

    python tools/bench_http.py --files 24 --file-mb 8 --range-mb 2 --threads 4 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import multiprocessing as mp
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reader")]

from httpserver import LoopbackServer

from lerowds.reader.io import http as new_http
from lerowds.reader.io.retry import Counters, RetryPolicy

logger = logging.getLogger("bench_http")
OLD_COMMIT = "50b027a"  # the last commit with the http.client transport


def old_http(commit: str) -> ModuleType:
    """``lerowds.reader.io.http`` as it was at ``commit`` (it imports only ``retry`` and ``errors``)."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:src/lerowds/reader/io/http.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("lerowds_old_http", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(src, f"{commit}:http.py", "exec"), module.__dict__)  # noqa: S102 - our own old source
    return module


def _serve(root: str, out: Any, stop: Any) -> None:
    import httpserver

    httpserver._Handler.disable_nagle_algorithm = True  # else small bodies wait on the client's delayed ACK
    with LoopbackServer(Path(root)) as srv:
        out.put(srv.url)
        stop.wait()


def _ranged(client: Any, urls: list[str], file_bytes: int, range_bytes: int, threads: int) -> float:
    """Read every file in ranges with ``threads`` threads; seconds taken."""
    jobs = [(u, s, min(range_bytes, file_bytes - s)) for u in urls for s in range(0, file_bytes, range_bytes)]
    lock, errors = threading.Lock(), []

    def work() -> None:
        buf = bytearray(range_bytes)
        while True:
            with lock:
                if not jobs:
                    return
                url, start, size = jobs.pop()

            def write(pos: int, data: memoryview) -> None:
                buf[pos : pos + len(data)] = data

            try:
                client.get_range(url, start, size, write, what="bench", counters=Counters())
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def _small(client: Any, url: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        client.get(url, what="bench", counters=Counters())
    return time.perf_counter() - t0


def _round(make: Callable[[], Any], args: argparse.Namespace, base: str) -> dict[str, float]:
    client = make()
    urls = [f"{base}/f{i}.bin" for i in range(args.files)]
    file_bytes, range_bytes = args.file_mb << 20, int(args.range_mb * (1 << 20))
    cpu0 = time.process_time()
    secs = _ranged(client, urls, file_bytes, range_bytes, args.threads)
    cpu = time.process_time() - cpu0
    total = args.files * file_bytes
    small_s = _small(client, f"{base}/small.bin", args.small)
    return {
        "mbs": total / secs / 1e6,
        "cpu_s_per_gb": cpu / (total / 1e9),
        "gets_per_s": args.small / small_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--file-mb", type=int, default=8)
    ap.add_argument("--range-mb", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--small", type=int, default=300, help="whole-file GETs of a 16 KB file per round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old-commit", default=OLD_COMMIT)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    old = old_http(args.old_commit)
    retry = RetryPolicy(attempts=2, backoff_s=0.01)
    makers = {
        "old": lambda: old.HttpClient(old.HttpOptions(retry=retry)),
        "new": lambda: new_http.HttpClient(new_http.HttpOptions(retry=retry)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(0)
        for i in range(args.files):
            (Path(tmp) / f"f{i}.bin").write_bytes(rng.randbytes(args.file_mb << 20))
        (Path(tmp) / "small.bin").write_bytes(rng.randbytes(16 << 10))
        ctx = mp.get_context("spawn")
        out, stop = ctx.Queue(), ctx.Event()
        server = ctx.Process(target=_serve, args=(tmp, out, stop), daemon=True)
        server.start()
        try:
            base = out.get(timeout=60)
            results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for rep in range(args.repeats):
                for name in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                    r = _round(makers[name], args, base)
                    results[name].append(r)
                    logger.info("repeat %d %s: %s", rep, name, {k: round(v, 2) for k, v in r.items()})
        finally:
            stop.set()
            server.join(10)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    ratios = {k: med["new"][k] / med["old"][k] for k in med["new"]}
    total_mb = args.files * args.file_mb
    logger.info(
        "%d MB per round in %g MB ranges, %d threads, %d repeats; medians: %s",
        total_mb,
        args.range_mb,
        args.threads,
        args.repeats,
        json.dumps({n: {k: round(v, 2) for k, v in m.items()} for n, m in med.items()}),
    )
    logger.info("new/old: %s", json.dumps({k: round(v, 3) for k, v in ratios.items()}))
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": None}, "medians": med, "ratios": ratios})
        )


if __name__ == "__main__":
    main()
