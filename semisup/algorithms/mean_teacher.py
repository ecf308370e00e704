"""Mean Teacher (official ``mean_teacher.py``): the Π-model with the EMA model as the teacher of view 1.

The teacher is the run's own parameter EMA (decay ``--ema-decay``, the one evaluated), read before this step's
update, in training-mode batch norm on view 1's statistics with every running buffer untouched.
"""
import torch.nn as nn

from .base import Models
from .pi_model import PiModel

NAME = "mean-teacher"
CLASS = "MeanTeacher"
STEP_COST = 7  # teacher or guess forward 1, labeled and unlabeled forward + backward 3 each
SUMMARY = "Mean Teacher: the EMA model's softmax on one view is the L2 target of the live model on another"
NEEDS_EMA = True
RAMP_SHARE = 0.4  # the consistency weight ramps linearly over 40 % of the run (warmup_pos)
OPTIONS = {
    "lambda_u": (50.0, "weight of the unlabeled (consistency) loss after its ramp-up"),
    "smoothing": (0.0, "label smoothing of the supervised term"),
}


class MeanTeacher(PiModel):
    def teacher(self, models: Models) -> nn.Module:
        return models.ema
