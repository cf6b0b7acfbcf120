"""The exact sample order of ORDER_VERSION 2, pinned as literal lists (computed once with lerowds at order
version 2; see ``order/pool.py``). Version 3 changed run mode's order only (``run_length > 1``): these
per-sample lists hold unchanged, and ``test_run_order_is_pinned`` pins version 3's run mode.

A stream that merely "differs from sorted" passes by luck or not at all; these lists fail on any change of
order. If one fails, every user's order (and every saved resume state) changed: bump ``ORDER_VERSION`` and
recompute the lists on purpose. Each test also checks the invariants (a permutation: every frame once).
"""

from __future__ import annotations

from pathlib import Path

import webdataset as wds
from contracts import check_exactly_once

import lerowds.wds
from lerowds import LeRobotWebDataset
from lerowds.format import read_local_index
from lerowds.reader.order import ORDER_VERSION

FRAMES = 150  # tabular_converted: episodes of [7, 1, 23, 12, 2, 19, 9, 3, 16, 11, 20, 13, 14] frames

# fmt: off
# LeRobotWebDataset(tabular_converted, episode_pool_size=2, seed=5), one consumer: epochs 0 and 1
DATASET_EPOCH0 = [
    120, 104, 112, 149, 114, 115, 113, 136, 105, 147, 141, 111, 144, 137, 106, 138, 108, 145, 103, 118,
    122, 109, 146, 107, 119, 117, 121, 116, 110, 148, 142, 139, 127, 135, 125, 133, 143, 140, 131, 124,
    20, 22, 16, 130, 9, 29, 129, 15, 134, 123, 14, 12, 132, 24, 17, 128, 13, 126, 10, 27, 23, 26, 64,
    21, 67, 65, 19, 70, 11, 25, 8, 18, 28, 30, 68, 69, 7, 72, 66, 71, 76, 82, 77, 79, 86, 88, 87, 80,
    91, 84, 74, 83, 81, 90, 85, 89, 78, 75, 73, 53, 46, 57, 60, 58, 56, 49, 50, 95, 93, 51, 100, 45, 92,
    102, 55, 101, 48, 59, 61, 54, 99, 52, 62, 47, 63, 94, 98, 96, 97, 43, 33, 41, 44, 35, 32, 34, 40, 4,
    42, 37, 38, 1, 31, 5, 36, 39, 0, 2, 3, 6,
]
DATASET_EPOCH1 = [
    35, 41, 3, 6, 5, 36, 31, 32, 33, 38, 0, 2, 4, 37, 1, 42, 86, 39, 89, 76, 87, 81, 88, 77, 40, 34, 91,
    84, 85, 79, 96, 80, 82, 93, 83, 99, 78, 90, 23, 8, 9, 100, 27, 12, 98, 92, 97, 11, 14, 18, 29, 95,
    94, 25, 22, 102, 30, 15, 101, 28, 122, 26, 116, 104, 107, 108, 24, 119, 16, 19, 115, 21, 111, 118,
    10, 112, 13, 17, 20, 106, 129, 110, 133, 109, 120, 103, 113, 130, 114, 121, 124, 134, 105, 125, 126,
    117, 135, 128, 127, 131, 132, 123, 43, 75, 44, 73, 72, 67, 69, 65, 70, 64, 71, 74, 137, 68, 145,
    141, 146, 142, 66, 143, 138, 52, 53, 57, 63, 45, 50, 144, 149, 54, 140, 47, 56, 61, 136, 139, 148,
    147, 60, 51, 49, 58, 62, 48, 55, 59, 46, 7,
]
# the lerowds.wds stages: episode_pool(4, seed=3) over tabular_converted's shards in index order
WDS_POOL4_SEED3 = [
    7, 39, 38, 22, 29, 37, 10, 3, 30, 8, 1, 19, 20, 14, 6, 36, 32, 24, 42, 21, 2, 43, 5, 25, 33, 27, 35,
    44, 13, 23, 34, 15, 52, 26, 62, 17, 11, 53, 56, 9, 0, 55, 48, 46, 59, 63, 16, 47, 57, 49, 12, 45,
    31, 51, 58, 18, 61, 54, 60, 4, 28, 67, 72, 68, 50, 40, 70, 41, 75, 65, 95, 83, 94, 91, 82, 97, 73,
    102, 64, 88, 93, 92, 80, 87, 100, 99, 78, 71, 79, 77, 69, 101, 90, 86, 96, 85, 98, 113, 66, 119,
    123, 109, 108, 129, 118, 84, 125, 124, 126, 120, 114, 76, 135, 89, 111, 112, 104, 74, 137, 122, 107,
    134, 141, 132, 121, 103, 138, 147, 149, 146, 139, 105, 115, 144, 110, 148, 143, 136, 127, 142, 140,
    106, 117, 145, 131, 130, 81, 116, 133, 128,
]
# run mode, order version 3: LeRobotWebDataset(tabular_converted, episode_pool_size=2, seed=5, run_length=4,
# shuffle_buffer=8), one consumer, epoch 0 (each episode's runs of 4 arrive in ascending order)
RUNS_R4_S8_EPOCH0 = [
    103, 106, 108, 104, 105, 109, 111, 107, 114, 110, 137, 112, 113, 136, 139, 115, 117, 118, 138, 120, 119,
    116, 141, 143, 121, 122, 140, 123, 142, 124, 126, 125, 144, 147, 145, 127, 146, 128, 133, 130, 129, 132,
    131, 134, 9, 148, 8, 149, 135, 10, 11, 64, 13, 12, 15, 66, 65, 67, 17, 19, 18, 16, 14, 69, 68, 22, 71,
    70, 20, 21, 24, 26, 23, 25, 27, 29, 76, 28, 30, 72, 77, 7, 81, 84, 78, 85, 80, 79, 82, 87, 83, 88, 90,
    91, 86, 89, 46, 45, 48, 52, 47, 74, 50, 49, 51, 73, 54, 55, 56, 53, 75, 57, 58, 92, 60, 93, 95, 61, 59,
    94, 63, 98, 62, 96, 44, 97, 43, 99, 31, 101, 32, 100, 34, 102, 37, 36, 40, 39, 33, 35, 38, 0, 41, 3, 42,
    6, 5, 4, 1, 2,
]
# fmt: on


def test_order_version_of_these_lists() -> None:
    assert ORDER_VERSION == 3


def test_dataset_order_is_pinned(tabular_converted: Path) -> None:
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=2, seed=5)
    epochs = [[int(s["index"]) for s in ds] for _ in range(2)]
    assert epochs == [DATASET_EPOCH0, DATASET_EPOCH1]
    for epoch in (DATASET_EPOCH0, DATASET_EPOCH1):
        check_exactly_once(epoch, range(FRAMES), "pinned epoch")


def test_run_order_is_pinned(tabular_converted: Path) -> None:
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=2, seed=5, run_length=4, shuffle_buffer=8)
    got = [int(s["index"]) for s in ds]
    assert got == RUNS_R4_S8_EPOCH0
    check_exactly_once(got, range(FRAMES), "pinned run-mode epoch")


def test_wds_pool_order_is_pinned(tabular_converted: Path) -> None:
    index, _ = read_local_index(tabular_converted)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList([str(tabular_converted / s.name) for s in index.shards]),
        wds.tarfile_to_samples(),
        lerowds.wds.episodes(),
        lerowds.wds.episode_pool(4, seed=3),
        lerowds.wds.decode_frames(),
        wds.batched(16),
    )
    got = [int(i) for batch in pipeline for i in batch["index"]]
    assert got == WDS_POOL4_SEED3
    check_exactly_once(WDS_POOL4_SEED3, range(FRAMES), "pinned wds order")
