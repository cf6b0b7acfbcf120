"""Which files of ``src/lerowds`` one sample crosses, on the DataLoader path and through ``lerowds.Loader``.

``python tools/sample_path.py [--dir CONVERTED] [--workers 1]``: opens the dataset (a small one written and
converted with ``lerowds.testing`` when ``--dir`` is not given), then traces (``sys.setprofile`` and
``threading.setprofile``, in DataLoader workers too) every Python function of ``src/lerowds`` that runs from
``iter(loader)`` to the first batch of one sample, and prints the files in the order they were first entered;
then the files later samples cross (in-process) and those of a remote read's first sample (a loopback HTTP
server). Module bodies (imports) are not counted; the dataset's constructor is traced on its own,
``Loader``'s with its first batch. The counts are the "files one sample crosses" of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
sys.path[:0] = [str(SRC), str(ROOT / "tests" / "reader")]  # the loopback server of the remote tests
PKG = str(SRC / "lerowds") + os.sep


def _profiler(record: Callable[[str], None]) -> Callable[..., None]:
    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        name = code.co_filename
        if name.startswith(PKG) and code.co_name != "<module>" and name not in seen:
            seen.add(name)
            record(name[len(PKG) :])

    return profile


@contextmanager
def trace() -> Iterator[list[str]]:
    """Files first entered, in order, by this process's threads while the block runs."""
    files: list[str] = []
    lock = threading.Lock()

    def record(name: str) -> None:
        with lock:
            files.append(name)

    profile = _profiler(record)
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        yield files
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


class _WorkerInit:
    """A DataLoader ``worker_init_fn`` that appends each file first entered in the worker to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, worker_id: int) -> None:
        def record(name: str) -> None:
            with open(self.path, "a") as f:
                f.write(name + "\n")

        profile = _profiler(record)
        threading.setprofile(profile)
        sys.setprofile(profile)


def _converted(tmp: Path) -> tuple[Path, list[str]]:
    """A small LeRobot v3 dataset converted (one worker: in this process) and the files the conversion crossed."""
    from lerowds.convert.run import ConvertOptions, convert
    from lerowds.testing.v3writer import sample_spec, write_v3_dataset

    source, output = tmp / "source", tmp / "converted"
    write_v3_dataset(source, sample_spec("demo"))
    with trace() as files:
        convert(ConvertOptions(repo_id="lerowds/path", root=source, output=output, progress=False))
    return output, files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="a converted dataset (default: a small one made here)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (0: in-process)")
    parser.add_argument("--steady", type=int, default=100, help="later samples traced in-process")
    args = parser.parse_args()

    from torch.utils.data import DataLoader

    import lerowds
    from lerowds import LeRobotWebDataset

    with tempfile.TemporaryDirectory() as tmp:
        if args.dir is None:
            path, conversion = _converted(Path(tmp))
            report("lerowds convert (--workers 1, local source)", conversion)
        else:
            path = args.dir

        meta = LeRobotWebDataset(path).meta
        keys = [*meta.camera_keys[:1], *(k for k in ("observation.state", "action") if k in meta.features)]
        deltas = {k: [-1 / meta.fps, 0.0] for k in keys}  # windows (padding masks included) on each path

        def dataset() -> Any:
            return LeRobotWebDataset(path, delta_timestamps=deltas, episode_pool_size=4)

        with trace() as opened:
            ds = dataset()
        report("LeRobotWebDataset(...) (open)", opened)

        log = Path(tmp) / "worker.txt"
        log.touch()
        loader = DataLoader(
            ds,
            batch_size=1,
            num_workers=args.workers,
            worker_init_fn=_WorkerInit(str(log)) if args.workers else None,
        )
        with trace() as main_side:
            it = iter(loader)
            next(it)
            del it  # joins the workers: their log is complete
        worker = log.read_text().split()
        report(f"DataLoader(num_workers={args.workers}): main process", main_side)
        if args.workers:
            report("DataLoader: worker process", worker)
        union = list(dict.fromkeys(main_side + worker))
        report("DataLoader path (main + worker)", union)

        ds, Loader = dataset(), lerowds.Loader  # the lazy public name resolved outside the trace
        with trace() as threaded:
            threads = Loader(ds, batch_size=1, num_threads=1)
            next(iter(threads))
            threads.close()
        report("lerowds.Loader(num_threads=1): constructor and first batch", threaded)

        samples = iter(dataset())
        next(samples)
        with trace() as steady:  # later samples, in-process: admissions and evictions included
            for _ in range(args.steady):
                next(samples)
        report(f"LeRobotWebDataset in-process, samples 2..{args.steady + 1}", steady)

        from httpserver import LoopbackServer

        with LoopbackServer(Path(path)) as server:
            remote = LeRobotWebDataset(
                server.url, delta_timestamps=deltas, episode_pool_size=4, cache_dir=Path(tmp) / "cache"
            )
            with trace() as fetched:
                samples = iter(remote)
                next(samples)
                del samples  # stops the prefetcher before the server goes
            report("remote (http, loopback) in-process: first sample", fetched)
    return 0


def report(title: str, files: list[str]) -> None:
    print(f"{title}: {len(files)} files")
    for name in files:
        print(f"  {name}")


if __name__ == "__main__":
    sys.exit(main())
