"""lerowds stages for a stock ``webdataset`` pipeline (see ``lerowds.reader.wds_stages``)."""

from lerowds.reader.env import split_by_rank, split_by_worker
from lerowds.reader.wds_stages import Episode, FrameRef, decode_frames, delta_windows, episode_pool, episodes

__all__ = [
    "Episode",
    "FrameRef",
    "decode_frames",
    "delta_windows",
    "episode_pool",
    "episodes",
    "split_by_rank",
    "split_by_worker",
]
