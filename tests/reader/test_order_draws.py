"""The webdataset pool stage's order (``order.draws``): pinned, every frame once, lazy, bounded pool."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lerowds.errors import ConfigError
from lerowds.reader.order.draws import UniformDraws, swap_remove_pool


def test_swap_remove_pool_is_pinned() -> None:
    lengths = [3, 1, 2, 2]
    out = list(swap_remove_pool(range(4), lengths.__getitem__, pool_size=2, draws=UniformDraws(7, 1, 0, 2)))
    assert out == [(0, 0), (0, 1), (1, 0), (2, 1), (0, 2), (3, 0), (3, 1), (2, 0)]


@given(
    lengths=st.lists(st.integers(0, 9), max_size=30),
    pool=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_every_frame_once_and_items_pulled_only_when_the_pool_has_room(lengths, pool, seed) -> None:
    pulled: list[int] = []

    def stream():
        for i in range(len(lengths)):
            pulled.append(i)
            yield i

    out = []
    for item, frame in swap_remove_pool(
        stream(), lengths.__getitem__, pool_size=pool, draws=UniformDraws(seed, 0, 0, 0)
    ):
        out.append((item, frame))
        drained = {i for i in pulled if sum(1 for o in out if o[0] == i) == lengths[i]}
        assert len(pulled) - len(drained) <= pool  # never more than pool_size episodes held
    assert sorted(out) == [(i, f) for i, n in enumerate(lengths) for f in range(n)]


def test_bad_pool_size_names_it() -> None:
    with pytest.raises(ConfigError, match="pool_size must be an integer >= 1, got 0"):
        list(swap_remove_pool([1], lambda i: 1, pool_size=0, draws=UniformDraws(0, 0, 0, 0)))
