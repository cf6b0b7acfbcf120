"""Run by test_lerobot_train_ranks.py under ``accelerate launch --num_processes=2``: ``lerowds train ARGS`` on
this rank, then ``OUT/rank<r>.json`` with what each step saw: ``[step, epoch, batches into the epoch,
[[episode, frame], ...], loss]`` (the loss is this rank's, before the mean over ranks).

Usage: train_ranks_script.py OUT lerobot-train-args...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lerowds.train import run


def main() -> None:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    steps: list[list] = []

    def record(r) -> None:
        frames = [list(f) for f in zip(r.batch["episode_index"].tolist(), r.batch["frame_index"].tolist())]
        steps.append([r.step, r.position.epoch, r.position.batches, frames, r.loss])

    run(argv, on_step=record)
    from accelerate import PartialState

    state = PartialState()
    report = {"rank": state.process_index, "num_processes": state.num_processes, "steps": steps}
    path = out / f"rank{state.process_index}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
