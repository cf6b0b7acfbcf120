"""Sample order as pure math: segments, the rank/worker shares, the episode pool, mix draws.

Everything here is a function of integers (seed, epoch, rank, worker, counters); nothing reads files, clocks or
processes. ``ranks`` cuts an epoch into equal rank and worker shares, ``pool`` orders frames inside a share (its window
math in ``lifetimes``, its event types in ``events``), ``draws`` is the webdataset stage's streaming pool.
"""

from lerowds.reader.order.draws import POOL_TAG, UniformDraws, swap_remove_pool
from lerowds.reader.order.events import Admit, Emit, Evict, PoolEvent
from lerowds.reader.order.pool import ORDER_VERSION, PoolOrder, pool_order
from lerowds.reader.order.ranks import (
    EPISODE_TAG,
    RankPlan,
    Remainder,
    consumer_sample_count,
    episode_order,
    rank_frame_count,
    rank_plan,
    rank_plans,
    worker_segments,
)
from lerowds.reader.order.segments import Segment, SegmentArray, cut

__all__ = [
    "EPISODE_TAG",
    "ORDER_VERSION",
    "POOL_TAG",
    "Admit",
    "Emit",
    "Evict",
    "PoolEvent",
    "PoolOrder",
    "RankPlan",
    "Remainder",
    "Segment",
    "SegmentArray",
    "UniformDraws",
    "consumer_sample_count",
    "cut",
    "episode_order",
    "pool_order",
    "rank_frame_count",
    "rank_plan",
    "rank_plans",
    "swap_remove_pool",
    "worker_segments",
]
