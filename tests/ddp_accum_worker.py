"""Run by test_ddp.py under torchrun: train.py on a batch-norm-free tiny model, recording what each rank did.

Usage: ddp_accum_worker.py RECORD_PATH_PREFIX [train.py flags]. The model ``wrn-10-tiny-nobn`` is registered here
only. Each rank writes RECORD_PATH_PREFIX-rank<r>.pt with its initial weights, the batch it drew at every step (so
one process can replay the same global batch), and its final weights and EMA.
"""
import dataclasses
import os
import sys

import torch

from semisup import runner
from semisup.algorithms.base import Rows
from semisup.distributed import exit_process
from semisup.engine import Trainer
from semisup.models import MODELS

from accum_support import strip_bn

MODELS["wrn-10-tiny-nobn"] = lambda num_classes, **arch: strip_bn(MODELS["wrn-10-tiny"](num_classes, **arch))
TRAINERS = []


class RecordingTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = {"initial": _clone(self.model.state_dict()), "batches": {}}
        TRAINERS.append(self)

    def apply_batch(self, batch):
        if isinstance(batch, Rows):  # the baselines' batches: every per-row tensor, and the rank's row count
            self.record["batches"][self.step] = {"rows": dict(batch.data), "full": batch.full}
        elif hasattr(batch, "strong"):  # FixMatch's and UDA's: labeled and unlabeled rows, split on their own
            self.record["batches"][self.step] = {"fields": dataclasses.asdict(batch)}
        elif hasattr(batch, "mixed"):  # ReMixMatch's: the mixed rows, then the first strong view's groups
            rows = {k: v for k, v in vars(batch).items() if k != "mixed"}
            self.record["batches"][self.step] = {"mixed": vars(batch.mixed), "rows": rows}
        else:
            self.record["batches"][self.step] = {"x": batch.x, "targets": batch.targets, "n_lb": batch.n_lb,
                                                 "full_n_lb": batch.full_n_lb}
        result = super().apply_batch(batch)
        self.record.update(final=_clone(self.model.state_dict()), ema=_clone(self.ema.state_dict()),
                           world_size=self.rt.world_size, algorithm=self.algorithm.state_dict())
        return result


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


if __name__ == "__main__":
    runner.Trainer = RecordingTrainer
    code = runner.main(sys.argv[2:])
    if code == 0:
        torch.save(TRAINERS[0].record, f"{sys.argv[1]}-rank{os.environ.get('RANK', '0')}.pt")
    exit_process(code)
