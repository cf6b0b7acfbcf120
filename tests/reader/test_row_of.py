"""``RowOf.rows``: the table rows of many episodes at once, identical to a plain ``searchsorted`` whatever the
ids (contiguous or not) and whatever the order of the queries; an episode not in the table is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.errors import FormatError
from lerowds.reader.sample.rows import RowOf


@settings(max_examples=200, deadline=None)
@given(
    ids=st.sets(st.integers(0, 300), min_size=1, max_size=120),
    contiguous=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_rows_equal_searchsorted_in_any_query_order(ids: set[int], contiguous: bool, seed: int) -> None:
    table = np.arange(len(ids)) if contiguous else np.array(sorted(ids), dtype=np.int64)
    rng = np.random.default_rng(seed)
    queries = rng.choice(table, size=rng.integers(0, 2 * table.size + 1))  # repeats and any order
    got = RowOf(table).rows(queries)
    assert got.dtype == np.int64
    assert got.tolist() == np.searchsorted(table, queries).tolist()
    assert table[got].tolist() == queries.tolist()


@pytest.mark.parametrize(
    "table, missing",
    [(np.arange(5), m) for m in (-1, 5, 10)] + [(np.array([0, 2, 3, 7, 9]), m) for m in (-1, 1, 8, 10)],
)
def test_an_episode_not_in_the_table_is_refused(table: np.ndarray, missing: int) -> None:
    with pytest.raises(FormatError, match=rf"episodes \[{missing}\] are not in this dataset"):
        RowOf(table).rows(np.array([3, missing, 0]))
