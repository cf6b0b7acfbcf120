"""The two contracts every stateful stage of the reader must pass, written once (torchdata.nodes' idea).

* ``check_exactly_once``: one epoch (or one pass) yields each id of its universe exactly once.
* ``check_save_restore``: run a stage, save its state at several points ``k`` (0, 1, the middle, the last
  item of an epoch, the epoch's end, inside the next epoch); the saving run must equal an unsaved run; a
  fresh stage restored from the state at ``k`` must yield exactly the rest of that run, ``run[k:]``.

A stage is seen through a small adapter (``Stage``): ``iterate()`` is one epoch of items (a sample id, a
batch's ids, or whole batches), ``state()`` what a checkpoint holds after the items taken so far, and
``restore(state)`` on a fresh stage before its first iteration. States travel through ``pickle`` like a
checkpoint does. The adapters below use public APIs only.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Protocol

import numpy as np
from torch.utils.data import DataLoader

from lerowds.reader.order import Emit, PoolOrder


class Stage(Protocol):
    def iterate(self) -> Iterator[Any]: ...

    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


def same(got: list[Any], want: list[Any], what: str) -> None:
    """The default comparison of two runs: equal item for item (the message names the first difference)."""
    if got != want:
        first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        raise AssertionError(
            f"{what}: {len(got)} items vs {len(want)} expected; first difference at item {first}: "
            f"{got[first] if first < len(got) else '<end>'} vs {want[first] if first < len(want) else '<end>'}"
        )


# ---- exactly once -----------------------------------------------------------------------------------------
def flat_ids(items: Iterable[Any]) -> list[Hashable]:
    """Item ids of a run: a batch (a list) counts as its members."""
    out: list[Hashable] = []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out


def check_exactly_once(items: Iterable[Any], universe: Iterable[Hashable], what: str) -> list[Hashable]:
    """``items`` (ids, or batches: lists of ids) are each id of ``universe`` exactly once; returns the ids in order."""
    ids = flat_ids(items)
    got, want = Counter(ids), Counter(universe)
    twice = sorted((i for i, n in got.items() if n > 1), key=repr)[:5]
    missing = sorted((want - got).keys(), key=repr)[:5]
    extra = sorted((k for k in got if k not in want), key=repr)[:5]
    assert not twice and not missing and not extra, (
        f"{what}: {len(ids)} ids for a universe of {sum(want.values())}; repeated {twice}, missing "
        f"{missing}, not in the universe {extra}"
    )
    return ids


def check_ranks_exactly_once(
    per_rank: Sequence[Iterable[Any]], universe: Iterable[Hashable], what: str, *, dropped: int = 0
) -> None:
    """The ranks' epochs: equally long, disjoint, and together the universe but ``dropped`` ids."""
    runs = [flat_ids(r) for r in per_rank]
    assert len({len(r) for r in runs}) == 1, f"{what}: ranks yield {[len(r) for r in runs]} ids"
    everything = [i for r in runs for i in r]
    assert len(set(everything)) == len(everything), f"{what}: an id comes on two ranks (or twice on one)"
    want = set(universe)
    assert set(everything) <= want and len(want) - len(everything) == dropped, (
        f"{what}: ranks cover {len(everything)} of {len(want)} ids, expected all but {dropped}"
    )


# ---- save at k, restore, compare the rest --------------------------------------------------------------------
def stream(stage: Stage) -> Iterator[Any]:
    """The stage's items epoch after epoch (a stage with nothing more to yield ends the stream)."""
    while True:
        empty = True
        for item in stage.iterate():
            empty = False
            yield item
        if empty:
            return


def take(stage: Stage, n: int) -> list[Any]:
    it = stream(stage)
    try:
        return list(islice(it, n))
    finally:
        it.close()  # a Loader's threads or a DataLoader's workers stop here, not at garbage collection


def default_cuts(epoch_items: int, total: int) -> list[int]:
    """0, 1, the middle, the epoch's last item, its end, and the middle of the next epoch (within ``total``)."""
    e = epoch_items
    return sorted({k for k in (0, 1, e // 2, e - 1, e, e + e // 2) if 0 <= k < total} | {min(e, total)})


def check_save_restore(
    make: Callable[[], Stage],
    *,
    epochs: int = 2,
    cuts: Callable[[int, int], Iterable[int]] = default_cuts,
    compare: Callable[[list[Any], list[Any], str], None] = same,
    what: str = "",
) -> list[Any]:
    """Save at each cut ``k`` of an ``epochs``-epoch run, finish it; restore each state into a fresh stage and
    compare what it yields with the rest of the run. Returns the reference run."""
    ref_stage = make()
    per_epoch = [list(ref_stage.iterate()) for _ in range(epochs)]
    reference = [item for epoch in per_epoch for item in epoch]
    ks = sorted(set(cuts(len(per_epoch[0]), len(reference))))
    assert ks and all(0 <= k <= len(reference) for k in ks), f"{what}: bad cuts {ks}"

    saver = make()
    states: dict[int, Any] = {}
    run: list[Any] = []
    it = stream(saver)
    try:
        for k in range(len(reference) + 1):
            if k in ks:
                states[k] = pickle.loads(pickle.dumps(saver.state()))  # as a checkpoint stores it
            if k < len(reference):
                run.append(next(it))
    finally:
        it.close()
    compare(run, reference, f"{what}: the run that saved its state at {ks}")

    for k, state in states.items():
        fresh = make()
        fresh.restore(state)
        compare(take(fresh, len(reference) - k), reference[k:], f"{what}: restored at k={k}")
    return reference


# ---- adapters ---------------------------------------------------------------------------------------------
def batch_ids(batch: Any) -> list[Hashable]:
    """A sample's or a batch's ids as a list: ``index``, or ``(source, index)`` for a mix."""
    index = np.asarray(batch["index"]).reshape(-1).tolist()
    if "source" not in batch:
        return index
    source = [batch["source"]] if isinstance(batch["source"], str) else list(batch["source"])
    return list(zip(source, index))


class Counted:
    """A dataset (or mix) iterated by a training loop that keeps its own counters: the epoch and the batches
    taken in it, saved with ``ds.state_dict(batches_consumed=..., batch_size=..., epoch=..., num_workers=...)``.

    ``loader_kw=None`` iterates the dataset itself (num_workers=0, one sample per step: batch_size 1);
    otherwise a ``DataLoader(ds, **loader_kw)``. ``item`` turns a sample or batch into what is compared.
    """

    def __init__(
        self,
        ds: Any,
        loader_kw: dict[str, Any] | None = None,
        item: Callable[[Any], Any] = batch_ids,
    ) -> None:
        self.ds, self.item = ds, item
        self.loader = None if loader_kw is None else DataLoader(ds, **loader_kw)
        self.epoch, self.consumed = 0, 0

    def iterate(self) -> Iterator[Any]:
        for batch in self.ds if self.loader is None else self.loader:
            self.consumed += 1
            yield self.item(batch)
        self.epoch, self.consumed = self.epoch + 1, 0

    def state(self) -> dict[str, Any]:
        if self.loader is None:
            return self.ds.state_dict(batches_consumed=self.consumed, batch_size=1, epoch=self.epoch)
        return self.ds.state_dict(
            batches_consumed=self.consumed,
            batch_size=self.loader.batch_size or 1,
            epoch=self.epoch,
            num_workers=self.loader.num_workers,
            drop_last=self.loader.drop_last,
        )

    def restore(self, state: dict[str, Any]) -> None:
        self.ds.load_state_dict(state)
        self.epoch, self.consumed = state["epoch"], state["batches_consumed"]


class SelfSaving:
    """A loader that is its own torch ``Stateful`` (``lerowds.Loader``, ``StatefulLoader``)."""

    def __init__(self, loader: Any, item: Callable[[Any], Any] = batch_ids) -> None:
        self.loader, self.item = loader, item

    def iterate(self) -> Iterator[Any]:
        for batch in self.loader:
            yield self.item(batch)

    def state(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def restore(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)


class Pool:
    """One consumer's ``PoolOrder`` (one epoch): its state is the number of emits, restored by ``skip``."""

    def __init__(self, segments: Any, **kw: Any) -> None:
        self.order = PoolOrder(segments, **kw)

    def iterate(self) -> Iterator[tuple[int, int]]:
        for event in self.order.events():
            if isinstance(event, Emit):
                yield (event.episode, event.frame)

    def state(self) -> int:
        return self.order.emitted

    def restore(self, state: int) -> None:
        self.order.skip(state)


class Replayed:
    """A stage without saved state (a webdataset pipeline): rebuilt from the same inputs it must replay the
    same stream, so its "state" is the count of items taken and restoring drops that many of a fresh run."""

    def __init__(self, build: Callable[[], Iterable[Any]], item: Callable[[Any], Any] = batch_ids) -> None:
        self.build, self.item = build, item
        self.taken, self.skip = 0, 0
        self.done = False

    def iterate(self) -> Iterator[Any]:
        if self.done:  # one pass: the pipeline has no epochs of its own
            return
        for n, x in enumerate(self.build()):
            if n >= self.skip:
                self.taken += 1
                yield self.item(x)
        self.done = True

    def state(self) -> int:
        return self.taken

    def restore(self, state: int) -> None:
        self.skip = self.taken = state
