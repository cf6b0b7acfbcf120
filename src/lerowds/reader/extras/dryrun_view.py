"""How ``lerowds plan`` shows a ``PlanReport``: a plain-text table and an optional matplotlib figure."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from lerowds.errors import ConfigError
from lerowds.format import atomic_write_bytes
from lerowds.reader.extras.dryrun import PlanReport


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_plan(r: PlanReport) -> str:
    """The report as a plain-text table (what ``lerowds plan`` prints)."""
    m = r.memory
    partial = r.batches_per_rank - r.full_batches_per_rank
    cams = f"{len(r.video_keys)} video camera(s)" if r.video_keys else "no video"
    config = (
        f"world_size={r.world_size} num_workers={r.num_workers} batch_size={r.batch_size} "
        f"episode_pool_size={r.episode_pool_size} seed={r.seed} epoch={r.epoch} remainder={r.remainder}"
    )
    if r.pool_byte_budget is not None:
        config += f" pool_byte_budget={r.pool_byte_budget}"
    if (r.run_length, r.shuffle_buffer) != (1, 0):
        config += f" run_length={r.run_length} shuffle_buffer={r.shuffle_buffer}"
    kept = (
        ("frames repeated", r.frames_repeated) if r.frames_repeated else ("frames dropped", r.frames_dropped)
    )
    lines = [
        f"dataset         {r.dataset}: {r.episodes} episodes, {r.frames} frames, {r.fps} fps, {cams}",
        f"config          {config}" + ("" if r.shuffle else " shuffle=False"),
        "",
        "per rank (every rank the same; DataLoader with drop_last=False)",
        f"  samples          {r.samples_per_rank}",
        f"  batches          {r.batches_per_rank} ({r.full_batches_per_rank} full + {partial} partial, "
        + f"one per worker at most; drop_last=True: {r.full_batches_per_rank})",
        f"  {kept[0]:<17}{kept[1]} of {r.frames} (so that every rank yields the same count)",
        "",
        "per worker (on every rank)",
        "  worker  samples  batches",
    ]
    lines += [
        f"  {w:<6}  {s:<7}  {b}" for w, (s, b) in enumerate(zip(r.samples_per_worker, r.batches_per_worker))
    ]
    lines += [
        "",
        f"pool memory, peak over epoch {r.epoch} (upper-bound estimates from the index: the largest pool window)",
        f"  per consumer     ≈ {_bytes(m.consumer_bytes)} (max over ranks x workers)",
        f"    tabular        ≈ {_bytes(m.tabular_bytes)} (parquet bytes of the held episodes, a proxy: "
        + "in RAM they take their uncompressed size)",
        f"    decoders       {m.decoders} open ≈ {_bytes(m.decoder_bytes)}",
        f"  per rank         ≈ {_bytes(m.rank_bytes)} (sum of its workers' peaks: an upper bound)",
    ]
    lines += [f"  one decoder      ≈ {_bytes(v)}  {k}" for k, v in m.bytes_per_decoder.items()]
    lines.append("")
    if not r.pool_sweep:
        lines.append(f"shuffle quality: n/a (rank 0 has no full batch of {r.batch_size})")
        return "\n".join(lines) + "\n"
    lines += [
        f"shuffle quality: rank 0, epoch {r.epoch}, {r.pool_sweep[0].batches} full batches in DataLoader order",
        "  pool size                   distinct episodes/batch  same-episode pair rate",
    ]
    for q in r.pool_sweep:
        notes = ["this run"] if q.pool_size == r.episode_pool_size else []
        if q.pool_size >= r.worker_share_segments and r.pool_byte_budget is None:
            notes.append("whole share")
        label = f"{q.pool_size} ({', '.join(notes)})" if notes else str(q.pool_size)
        lines.append(f"  {label:<26}  {q.distinct_episodes:<23.2f}  {_rate(q.collision_rate)}")
    lines.append(
        f"  {'ideal global shuffle':<26}  {r.ideal.distinct_episodes:<23.2f}  {_rate(r.ideal.collision_rate)}"
    )
    return "\n".join(lines + _run_lines(r)) + "\n"


def _run_lines(r: PlanReport) -> list[str]:
    """The run-mode sweep at this pool size: shuffle figures and the buffer's memory per consumer."""
    if not r.run_sweep:
        return []
    lines = [
        "",
        f"run mode at episode_pool_size={r.episode_pool_size} (rank 0, first batches of epoch {r.epoch}; "
        + "buffer: the decoded frames of the runs it holds, per consumer)",
        f"  run_length shuffle_buffer  distinct/batch  same-episode  within {r.near_frames} frames  buffer",
    ]
    for q in r.run_sweep:
        mine = " (this run)" if (q.run_length, q.shuffle_buffer) == (r.run_length, r.shuffle_buffer) else ""
        lines.append(
            f"  {q.run_length:<10} {q.shuffle_buffer:<14}  {q.distinct_episodes:<14.2f}  "
            f"{_rate(q.collision_rate):<12}  {_rate(q.near_pair_rate):<16}  {_bytes(q.buffer_bytes)}{mine}"
        )
    return lines


# ----------------------------------------------------------------------------------------------- plot
def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or a ConfigError that says how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'lerowds[plot]')"
        ) from None
    return plt


def plot_plan(r: PlanReport, path: str | os.PathLike[str]) -> Path:
    """Save a figure: distinct episodes per batch vs. pool size (with the ideal), samples and pool memory
    per rank. Needs matplotlib (``pip install matplotlib``); the file appears only once complete."""
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig, (ax_q, ax_s, ax_m) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    try:
        if r.pool_sweep:
            sizes = [q.pool_size for q in r.pool_sweep]
            ax_q.plot(sizes, [q.distinct_episodes for q in r.pool_sweep], "o-", label="this loader (rank 0)")
            mine = [q for q in r.pool_sweep if q.pool_size == r.episode_pool_size]
            if mine:
                ax_q.plot([r.episode_pool_size], [mine[0].distinct_episodes], "r*", ms=14, label="this run")
            ax_q.set_xscale("log", base=2)
        ax_q.axhline(r.ideal.distinct_episodes, ls="--", c="k", label="ideal global shuffle")
        ax_q.set(xlabel="episode_pool_size", ylabel=f"distinct episodes per batch of {r.batch_size}")
        ax_q.set_title("shuffle quality")
        ax_q.legend()

        ranks = range(r.world_size)
        bottom = [0] * r.world_size
        for w, samples in enumerate(r.samples_per_worker):
            ax_s.bar(ranks, [samples] * r.world_size, bottom=bottom, label=f"worker {w}")
            bottom = [b + samples for b in bottom]
        extra = f"{r.frames_repeated} repeated" if r.frames_repeated else f"{r.frames_dropped} dropped"
        ax_s.set(xlabel="rank", ylabel="samples per epoch", title=f"samples per rank ({extra} of {r.frames})")
        if len(r.samples_per_worker) <= 8:
            ax_s.legend()

        ax_m.bar(ranks, [b / 2**20 for b in r.memory.per_rank_bytes])
        ax_m.set(xlabel="rank", ylabel="MiB (estimate)", title="pool memory per rank (sum of worker peaks)")
        for ax in (ax_s, ax_m):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f"{r.dataset}: world_size={r.world_size} num_workers={r.num_workers} epoch={r.epoch}")
        supported = fig.canvas.get_supported_filetypes()
        if fmt not in supported:
            raise ConfigError(f"--plot {path}: unknown image type {fmt!r}, use one of {sorted(supported)}")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)
    return path
