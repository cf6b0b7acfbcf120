"""Weighted mixing of several converted datasets: ``lerowds.mix({"a": ds_a, "b": ds_b}, {"a": 0.7, "b": 0.3})``.

``mix()`` opens path sources as ``LeRobotWebDataset`` and returns a ``MixedDataset``, which draws over them.
Semantics (also in ``docs/MIX.md``; the pure order math is in ``order/mix_draws.py``):

* A **mix epoch** is ``samples_per_epoch`` samples over all ranks (default: the sum of the sources'
  frames), split over ranks (``samples_per_epoch // world_size`` each, the remainder dropped so every rank
  yields the same count: ``len()``) and over DataLoader workers in contiguous counts, like
  ``order.consumer_sample_count``.
* The **source of a sample**: draw ``i`` of consumer ``(rank, worker)`` in mix epoch ``e`` is raw output ``i``
  of ``PCG64(SeedSequence([seed, e, rank, worker, MIX_TAG]))``, as ``u = (raw >> 11) * 2**-53`` in [0, 1),
  mapped through the cumulative normalized weights (inverse CDF). A pure function of integers.
* The **samples of a source** come from that source's own consumer stream (its episode pool order, its
  rank/worker split): pass ``p`` of source ``s`` in mix epoch ``e`` is the source's epoch
  ``e * PASS_STRIDE + p``. When the consumer's share of a pass runs out, the source starts its next pass
  (reshuffled) while the others go on: within a pass every frame of the consumer's share comes once. Each
  mix epoch starts every source at pass 0; a pass cut off by the epoch's end is not continued.
* **Resume** after ``k`` samples of a consumer's stream: draw ``k`` sources, count ``c_s`` per source, and
  start source ``s`` at pass ``c_s // n_s`` after ``c_s % n_s`` samples (``n_s``: the consumer's frames per
  pass of ``s``): integers only, no I/O. On another world size or worker count the mix epoch continues
  elastically (``resume/elastic.py``: the old consumers' remaining draws, cut over the new ones).
* Every sample carries ``"source": name``. Sources must agree on fps, feature names and shapes, camera
  keys, ``delta_timestamps`` windows and ``return_uint8``.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from numbers import Real
from typing import Any

from lerowds.checks import check_int
from lerowds.errors import ConfigError
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.env import Consumer
from lerowds.reader.meta import DatasetMeta
from lerowds.reader.order.mix_draws import SourceDraws, interleave, normalized_weights, source_positions
from lerowds.reader.order.pool import ORDER_VERSION
from lerowds.reader.order.ranks import Remainder, consumer_sample_count, rank_frame_count
from lerowds.reader.stream import Sample, Stream, StreamDataset

logger = logging.getLogger(__name__)

__all__ = ["PASS_STRIDE", "MixedDataset", "check_compatible", "mix"]

PASS_STRIDE = 2**20  # source epoch of pass p in mix epoch e: e * PASS_STRIDE + p (p < PASS_STRIDE)


# ---- the dataset -------------------------------------------------------------------------------------
def _describe(name: str, ds: LeRobotWebDataset) -> str:
    return f"{name!r} ({ds.meta.repo_id} at {ds.source})"


def _sample_format(ds: LeRobotWebDataset) -> dict[str, Any]:
    """What decides a sample's keys and shapes (cameras may differ in size: transforms can resize)."""
    cams = set(ds.meta.camera_keys)
    return {
        "fps": ds.meta.fps,
        "feature": {k: tuple(f.get("shape", ())) for k, f in ds.meta.features.items() if k not in cams},
        "camera key": dict.fromkeys(sorted(cams)),
        "delta_timestamps key": {} if ds.windows is None else dict(ds.windows.offsets),
        "return_uint8": ds.spec.return_uint8,
    }


def check_compatible(sources: Mapping[str, LeRobotWebDataset]) -> None:
    """Raise ``ConfigError`` naming both datasets and the key where a source's samples differ from the first's."""
    (first, ref), *rest = sources.items()
    want = _sample_format(ref)
    for name, ds in rest:
        got = _sample_format(ds)
        pair = f"{_describe(first, ref)} and {_describe(name, ds)}"
        for what in ("fps", "return_uint8"):
            if got[what] != want[what]:
                raise ConfigError(f"mixed datasets {pair} differ in {what}: {want[what]} vs {got[what]}")
        for what in ("feature", "camera key", "delta_timestamps key"):
            a, b = want[what], got[what]
            for key in list(a) + [k for k in b if k not in a]:
                if key not in a or key not in b:
                    holder, other = (name, first) if key in b else (first, name)
                    raise ConfigError(
                        f"mixed datasets {pair}: {what} {key!r} is in {holder!r}, not {other!r}"
                    )
                if a[key] != b[key]:
                    raise ConfigError(f"mixed datasets {pair} differ in {what} {key!r}: {a[key]} vs {b[key]}")


class MixedDataset(StreamDataset):
    """Samples drawn from several ``LeRobotWebDataset`` by weight; see the module docstring. Use ``mix()``."""

    remainder: Remainder = "drop"  # a mix epoch's samples that do not divide by the world size are dropped

    def __init__(
        self,
        sources: Mapping[str, LeRobotWebDataset],
        weights: Mapping[str, float],
        *,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if not sources:
            raise ConfigError("mix needs at least one source")
        check_int("seed", seed)
        if sorted(weights) != sorted(sources):
            raise ConfigError(f"mix weights are for {sorted(weights)} but the sources are {sorted(sources)}")
        seen: dict[int, str] = {}
        for name, ds in sources.items():
            if not isinstance(ds, LeRobotWebDataset):
                raise ConfigError(f"mix source {name!r} must be a LeRobotWebDataset, got {type(ds).__name__}")
            if id(ds) in seen:
                raise ConfigError(
                    f"mix sources {seen[id(ds)]!r} and {name!r} are the same object; open it twice"
                )
            seen[id(ds)] = name
        check_compatible(sources)
        self.sources = dict(sources)
        self.names = tuple(self.sources)
        self._weights = normalized_weights([weights[n] for n in self.names])
        self.weights = dict(zip(self.names, self._weights.tolist()))
        self.seed = seed
        frames = sum(ds.num_frames for ds in self.sources.values())
        self.samples_per_epoch = frames if samples_per_epoch is None else samples_per_epoch
        check_int("samples_per_epoch", self.samples_per_epoch, 1)
        streams = [ds.stream for ds in self.sources.values()]
        self.stream = Stream(  # the mix's own epoch clock and resume state; the sources' are not used
            self._override("rank", rank, [s.rank for s in streams]),
            self._override("world_size", world_size, [s.world_size for s in streams]),
        )
        self.meta: DatasetMeta = self.sources[self.names[0]].meta
        self.metas: dict[str, DatasetMeta] = {n: ds.meta for n, ds in self.sources.items()}
        self._per_pass(self.stream.consumer())  # fail early; DataLoader workers check their own share again

    def _override(self, what: str, value: int | None, of_sources: list[int | None]) -> int | None:
        given = {v for v in of_sources if v is not None}
        if value is None and len(given) > 1:
            raise ConfigError(f"mix sources were opened with different {what}= values {sorted(given)}")
        if value is None:
            return given.pop() if given else None
        if given - {value}:
            raise ConfigError(f"mix has {what}={value} but a source was opened with {what}={sorted(given)}")
        return value

    def __len__(self) -> int:
        """Samples this rank yields in one mix epoch (the same on every rank)."""
        return rank_frame_count(self.samples_per_epoch, world_size=self.stream.consumer().world_size)

    def loader(self, batch_size: int = 32, **kwargs: Any) -> Any:
        """``lerowds.Loader(self, batch_size, **kwargs)``: batches decoded by threads of this process."""
        from lerowds.reader.loader.core import Loader

        return Loader(self, batch_size, **kwargs)

    def stats(self) -> dict[str, dict[str, float]]:
        """Each source's ``stats()`` (empty unless it was opened with ``stats=True``)."""
        return {name: ds.stats() for name, ds in self.sources.items()}

    # ------------------------------------------------------------------------------------------ stream
    def config(self, num_workers: int | None = None) -> dict[str, Any]:
        """The configuration a resume state records: the mix's and each source's (all must match on load)."""
        per_source = {}
        for name, ds in self.sources.items():
            cfg = ds.config()
            per_source[name] = {
                k: v for k, v in cfg.items() if k not in ("kind", "world_size", "num_workers")
            }
        return {
            "kind": "mix",
            "seed": self.seed,
            "world_size": self.stream.consumer().world_size,
            "num_workers": num_workers,
            "samples_per_epoch": self.samples_per_epoch,
            "mix_sources": list(self.names),
            "mix_weights": self._weights.tolist(),
            "source": per_source,
            "order_version": ORDER_VERSION,
        }

    def sample_counts(self, world_size: int, num_workers: int) -> list[int]:
        """Samples each of ``num_workers`` consumers of a rank yields in a mix epoch on ``world_size`` ranks."""
        n = self.samples_per_epoch
        return [
            consumer_sample_count(n, world_size=world_size, num_workers=num_workers, worker=w)
            for w in range(num_workers)
        ]

    def _per_pass(self, consumer: Consumer) -> list[int]:
        """Each source's samples per pass for ``consumer``. Raises (in every worker alike) when a weighted
        source leaves any worker of the rank without frames, or needs PASS_STRIDE passes or more."""
        world, k = consumer.world_size, consumer.num_workers
        counts = self.sample_counts(world, k)
        out = []
        for (name, ds), weight in zip(self.sources.items(), self._weights.tolist()):
            n = ds.num_frames
            shares = [
                consumer_sample_count(n, world_size=world, num_workers=k, worker=w, remainder=ds.remainder)
                if n >= world
                else 0
                for w in range(k)
            ]
            if weight > 0 and 0 in shares:
                raise ConfigError(
                    f"mix source {_describe(name, ds)} has weight {weight:g} but rank {consumer.rank} worker "
                    f"{shares.index(0)} owns none of its {ds.num_frames} frames ({consumer.world_size} ranks x "
                    f"{consumer.num_workers} workers): use fewer workers or ranks, or drop the source"
                )
            if weight > 0 and max(-(-c // n) for c, n in zip(counts, shares)) > PASS_STRIDE:
                raise ConfigError(
                    f"mix source {name!r} would need more than PASS_STRIDE={PASS_STRIDE} passes of its "
                    f"{min(shares)} samples per worker in a mix epoch of {max(counts)}: lower samples_per_epoch"
                )
            out.append(shares[consumer.worker])
        return out

    def consumer_stream(self, epoch: int, consumer: Consumer, skip: int = 0) -> Iterator[Sample]:
        """The samples consumer ``consumer`` yields in mix epoch ``epoch`` after its first ``skip``."""
        count = self.sample_counts(consumer.world_size, consumer.num_workers)[consumer.worker]
        if not 0 <= skip <= count:
            raise ConfigError(f"cannot skip {skip} samples: this consumer has {count} in mix epoch {epoch}")
        per_pass = self._per_pass(consumer)
        dropped = self.samples_per_epoch % consumer.world_size
        if consumer.worker == 0 and dropped:
            logger.info(
                "mix epoch %d: dropped %d of %d samples so that each of %d ranks yields %d",
                epoch,
                dropped,
                self.samples_per_epoch,
                consumer.world_size,
                len(self),
            )
        draws = SourceDraws(
            self._weights, seed=self.seed, epoch=epoch, rank=consumer.rank, worker=consumer.worker
        )
        start = source_positions(draws.counts(skip).tolist(), per_pass)  # integers only, no I/O
        sources = [self.sources[n] for n in self.names]

        def open_pass(s: int, p: int, skip_s: int) -> Iterator[dict[str, Any]]:
            return sources[s].consumer_stream(epoch * PASS_STRIDE + p, consumer, skip_s)

        return self._tagged(interleave(draws.stream(count - skip), open_pass, start))

    def _tagged(self, items: Iterator[tuple[int, Sample]]) -> Iterator[Sample]:
        names = self.names
        for s, sample in items:
            sample["source"] = names[s]
            yield sample

    @property
    def plain_float_cameras(self) -> bool:
        """Every source's cameras come out as float32 and no transform sees them (see the dataset's)."""
        return all(ds.plain_float_cameras for ds in self.sources.values())

    def thread_copy(self, thread: int, threads: int, *, uint8: bool, lock: threading.Lock) -> MixedDataset:
        """A shallow copy whose sources are their ``thread_copy`` for consumer thread ``thread`` of ``threads``."""
        view = copy.copy(self)
        view.sources = {
            name: ds.thread_copy(thread, threads, uint8=uint8, lock=lock) for name, ds in self.sources.items()
        }
        return view


def mix(
    sources: Mapping[str, Any] | Sequence[Any],
    weights: Mapping[str, float] | Sequence[float] | None = None,
    *,
    seed: int = 0,
    samples_per_epoch: int | None = None,
    **dataset_kwargs: Any,
) -> MixedDataset:
    """Mix datasets by weight: ``sources`` maps a name to a ``LeRobotWebDataset`` or a path/URL (a sequence is
    named by repo ids, or by positions when those repeat); ``{path: weight}`` is also accepted.

    ``weights`` (a mapping by name or a sequence; default: proportional to frames) are normalized to 1. Path
    sources are opened as ``LeRobotWebDataset(path, seed=seed, **dataset_kwargs)``.
    """
    if isinstance(sources, (str, bytes, os.PathLike)):
        raise ConfigError(f"mix sources must be a list or dict of datasets or paths, got {sources!r}")
    if isinstance(sources, Mapping):
        items = list(sources.items())
        if items and all(
            isinstance(v, Real) and not isinstance(v, bool) for _, v in items
        ):  # {"ORG/a": 0.7, "ORG/b": 0.3}
            if weights is not None:
                raise ConfigError("sources map paths to weights already; do not pass weights= as well")
            weights = {str(k): float(v) for k, v in items}
            items = [(k, k) for k, _ in items]
        names: list[str] | None = [str(k) for k, _ in items]
        given = [v for _, v in items]
    else:
        names, given = None, list(sources)
    kwargs = {"seed": seed, **dataset_kwargs}
    if all(isinstance(g, LeRobotWebDataset) for g in given):
        unused = sorted(set(dataset_kwargs) - {"rank", "world_size"})
        if unused:
            raise ConfigError(
                f"dataset keyword arguments {unused} apply to path sources only; none was given"
            )
    opened = [g if isinstance(g, LeRobotWebDataset) else LeRobotWebDataset(g, **kwargs) for g in given]
    if names is None:
        repo_ids = [ds.meta.repo_id for ds in opened]
        names = repo_ids if len(set(repo_ids)) == len(repo_ids) else [str(i) for i in range(len(opened))]
    if len(set(names)) != len(names):
        raise ConfigError(f"mix source names repeat: {names}")
    if weights is None:
        w = [float(ds.num_frames) for ds in opened]
    elif isinstance(weights, Mapping):
        missing = [n for n in names if n not in weights]
        extra = sorted(set(map(str, weights)) - set(names))
        if missing or extra:
            raise ConfigError(
                f"mix weights lack sources {missing} and name unknown ones {extra}; sources: {names}"
            )
        w = [weights[n] for n in names]
    else:
        w = list(weights)
        if len(w) != len(names):
            raise ConfigError(f"got {len(w)} mix weights for {len(names)} sources {names}: {w}")
    return MixedDataset(
        dict(zip(names, opened)),
        dict(zip(names, w)),
        seed=seed,
        samples_per_epoch=samples_per_epoch,
        rank=dataset_kwargs.get("rank"),
        world_size=dataset_kwargs.get("world_size"),
    )
