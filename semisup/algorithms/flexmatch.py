"""FlexMatch (curriculum pseudo-labeling), as its official code, TorchSSL ``models/flexmatch``, computes it.

    q       = sg[softmax(logits_weak)] of the joint pass,  ŷ = argmax q
    σ(c)    = images whose mark is c; N_unused = images never marked (mark −1), over the whole unlabeled set
    β(c)    = σ(c) / max(max_c σ, N_unused)   (warm-up; without it σ(c) / max_c σ), kept while one value fills
              every mark (the official guard)
    T(c)    = τ·β(c)/(2 − β(c))               (the convex mapping),  m = 1[max q >= T(ŷ)]
    marks   ← ŷ for the images whose max q >= τ (the fixed τ, not T), overwriting older marks
    loss_u  = 1/(μB) Σ m·CE(ŷ, logits_strong),  loss = loss_x + λu·loss_u

β starts at 0, so every threshold starts at 0: at first every pseudo-label counts, and the thresholds rise as the
marks accumulate. A step masks with the β of the marks written up to the step before, then marks, then recomputes
β (USB's order; TorchSSL recomputes at the start of the next step: the same values). The marks are one per image
of the unlabeled set (which includes the labeled images), indexed by the dataset index the sampler drew; an index
drawn twice in one step takes the label of its last selected row.

Beyond the official code: the marks and β are saved in the checkpoint (TorchSSL saves neither, so its resumes start
the curriculum again), and under torchrun they are one curriculum for all ranks (both codebases count per process).
"""
from typing import Optional

import torch

from .adaptive import AdaptiveThreshold, Selection, StepLogits
from .thresholds import UNUSED, flexmatch_thresholds, learning_effect, write_marks

NAME = "flexmatch"
CLASS = "FlexMatch"
STEP_COST = 45  # as FixMatch: 15 images per labeled image, forward and backward in the joint pass
SUMMARY = "FlexMatch: FixMatch with per-class thresholds τ·M(β(c)) from each class's share of confident marks"
# FixMatch's recipe (its DEFAULTS) and these of its options, as fixmatch.py declares them
LIKE = ("fixmatch", ("confidence", "lambda_u", "uratio", "strong_aug"))
OPTIONS = {
    "threshold_warmup": (True, "flexmatch: the unused images count in β's denominator until the marked ones "
                               "dominate (the official thresh_warmup)"),
}


class FlexMatch(AdaptiveThreshold):
    stats = ("pass_rate", "class_threshold", "unused_share")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.marks: Optional[torch.Tensor] = None
        self.beta = torch.zeros(num_classes)

    def bind_unlabeled(self, count: int) -> None:
        self.marks = torch.full((count,), UNUSED, dtype=torch.long)

    def select(self, step: StepLogits) -> Selection:
        tau, probs = self.cfg.confidence, step.weak.softmax(-1)
        confidence, labels = probs.max(-1)
        thresholds = flexmatch_thresholds(self.beta.to(probs.device), tau)
        mask = (confidence >= thresholds[labels]).float()
        if self.marks is not None and step.index is not None:
            self.marks = self.marks.to(probs.device)
            write_marks(self.marks, step.index, labels, confidence >= tau)
            self.beta = learning_effect(self.marks, self.num_classes, self.beta.to(probs.device),
                                        self.cfg.threshold_warmup)
        unused = (self.marks == UNUSED).float().mean() if self.marks is not None else torch.ones(())
        self.last_stats = {"pass_rate": mask.mean(), "class_threshold": thresholds, "unused_share": unused}
        return Selection(labels, mask)

    def state_dict(self) -> dict:
        marks = {} if self.marks is None else {"marks": self.marks.cpu().clone()}
        return {**super().state_dict(), **marks, "beta": self.beta.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "marks" not in state:
            return
        marks, beta = state["marks"], state["beta"]
        if self.marks is not None and marks.shape != self.marks.shape:
            raise ValueError(f"flexmatch's curriculum marks {len(marks)} unlabeled images, this run's unlabeled set "
                             f"holds {len(self.marks)}")
        self.check_classes(beta, "curriculum")
        if int(marks.max()) >= self.num_classes:
            raise ValueError(f"flexmatch's curriculum marks class {int(marks.max())}, this run's data has "
                             f"{self.num_classes} classes")
        self.marks, self.beta = marks.clone(), beta.clone().float()
