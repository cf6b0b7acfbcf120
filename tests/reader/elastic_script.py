"""Run by test_elastic.py under ``torch.distributed.run``: resume on M processes (gloo, CPU) from the state a
run on other ranks saved.

Usage: elastic_script.py resume DATASET OUT_DIR  (reads OUT_DIR/state.json)
Rank and world size come from the process group, as in training. Each rank writes a json report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset

KW = {"shuffle": True, "seed": 7, "episode_pool_size": 2}  # test_elastic.KW


def main() -> None:
    mode, dataset, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode != "resume":
        raise SystemExit(f"usage: elastic_script.py resume DATASET OUT_DIR, got mode {mode!r}")
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = LeRobotWebDataset(dataset, **KW)
    report: dict[str, object] = {"rank": rank, "world_size": world}
    ds.load_state_dict(json.loads((out / "state.json").read_text()))
    dl = DataLoader(ds, batch_size=5, num_workers=1)
    report["epoch0"] = [i for b in dl for i in b["index"].tolist()]
    report["epoch1"] = [i for b in dl for i in b["index"].tolist()]
    (out / f"{mode}{rank}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
