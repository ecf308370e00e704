"""Compression during training, wired into the Trainer's hooks by ``install``.

- ``--slim-lambda S``: network slimming's L1 penalty, S·sign(γ) added to every batch-norm γ gradient in the
  ``after_backward`` hook, i.e. once per optimizer step, after AMP unscaling and after all micro-batches.
- ``--prune-schedule``: magnitude pruning events in the ``after_step`` hook (after the optimizer step, weight decay
  and EMA update). Masks are computed on the raw model and applied to both the raw and the EMA model, so the
  reported (EMA) model has the same sparsity. Event times t count completed optimizer steps. With
  ``--prune-ratio-file`` every layer named in the file is pruned on its own to its own ratio (oneshot, iterative,
  agp; agp ramps each from min(--prune-initial, its ratio)), the others not at all. The file is read again when a
  run resumes, so every checkpoint keeps its ratios (``RATIOS_KEY``) and a resumed run refuses a file that changed.
- ``--init`` of a checkpoint with masks (or ``--init-prune magnitude|taylor``) keeps its masks during fine-tuning.
"""
from typing import Optional

import torch

from ..config import Config, ConfigError
from ..masks import Masks, get_masks, prunable_modules, set_masks, weight_param, zero_pruned_
from ..models import batch_norms
from .sensitivity import WEIGHT_METHODS, check_layers, masks_from_ratios, read_ratio_file, weight_layers
from .slimming import slim_hook
from .unstructured import agp_sparsity, magnitude_scores, masks_from_scores, set_drop_regrow

RATIOS_KEY = "prune_ratios"  # the checkpoint entry that keeps the ratio file's ratios


def apply_masks(trainer, masks: Masks) -> None:
    """Mask the raw and the EMA model alike and let the EMA follow the re-registered parameters and masks."""
    set_masks(trainer.model, masks)
    set_masks(trainer.ema.model, masks)
    trainer.ema.track(trainer.model)


class PruneSchedule:
    """One of oneshot / iterative / agp / set; ``at(trainer, t)`` acts when t is one of its events."""

    def __init__(self, cfg: Config):
        self.kind, self.ratio, self.scope = cfg.prune_schedule, cfg.prune_ratio, cfg.prune_scope
        self.start, self.end, self.every = cfg.prune_start, cfg.prune_end or cfg.steps, cfg.prune_every
        self.initial, self.zeta, self.seed = cfg.prune_initial, cfg.set_zeta, cfg.seed
        self.layer_ratios = (read_ratio_file(cfg.prune_ratio_file, WEIGHT_METHODS, "train.py --prune-ratio-file")
                             if cfg.prune_ratio_file else None)

    def is_event(self, t: int) -> bool:
        """oneshot: t = start. Others: start, start + every, … up to end; agp and iterative also at end itself
        (s_f reached, final weights pruned). SET has no extra event at the end: its regrown weights need steps."""
        if self.kind == "oneshot":
            return t == self.start
        on_grid = self.start <= t <= self.end and (t - self.start) % self.every == 0
        return on_grid or (t == self.end and self.kind in ("agp", "iterative"))

    def masks(self, model, t: Optional[int] = None) -> Masks:
        """Magnitude masks for the target at event t (agp's ramp; None: the final target): --prune-ratio under
        --prune-scope, or each layer's own ratio from the ratio file."""
        scores = magnitude_scores(model)
        if self.layer_ratios is None:
            ratio = self.ratio if t is None else agp_sparsity(t, self.initial, self.ratio, self.start, self.end)
            return masks_from_scores(scores, ratio, self.scope)
        ratios = {name: r if t is None else agp_sparsity(t, min(self.initial, r), r, self.start, self.end)
                  for name, r in self.layer_ratios.items()}
        return masks_from_ratios(scores, ratios)

    def __call__(self, trainer, step: int) -> None:
        self.at(trainer, step + 1)

    def at(self, trainer, t: int) -> None:
        if not self.is_event(t):
            return
        model = trainer.model
        if self.kind == "iterative":
            masks = self.masks(model)
            zero_pruned_(model, masks)
            zero_pruned_(trainer.ema.model, masks)
        elif self.kind == "set" and t > self.start:
            self._drop_regrow(trainer, t)
        elif self.kind == "agp":
            masks, old = self.masks(model, t), get_masks(model)
            apply_masks(trainer, {k: m & old[k].to(m.device) if k in old else m for k, m in masks.items()})
        else:
            apply_masks(trainer, self.masks(model))

    def _drop_regrow(self, trainer, t: int) -> None:
        """SET: per layer, drop ζ of the live weights and regrow as many at random, initialised at zero.

        The random positions come from a generator seeded by (seed, t): identical on every rank and on resume.
        """
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + t)
        scores, old = magnitude_scores(trainer.model), get_masks(trainer.model)
        masks, grown = {}, {}
        for key, mask in old.items():
            masks[key], grown[key] = set_drop_regrow(scores[key].cpu(), mask, self.zeta, generator)
        apply_masks(trainer, masks)
        for model in (trainer.model, trainer.ema.model):
            modules = dict(model.named_modules())
            with torch.no_grad():
                for key, g in grown.items():
                    param = weight_param(modules[key[:-len(".weight")]])
                    param.masked_fill_(g.to(param.device), 0.0)


def install(trainer, init_masks: Optional[Masks] = None) -> None:
    """Hook the configured compression into ``trainer`` and apply the masks of --init (or of --init-prune) to keep
    while training; call before resuming: a checkpoint's masks win."""
    cfg = trainer.cfg
    if init_masks:
        apply_masks(trainer, init_masks)
    if cfg.slim_lambda > 0:
        if not batch_norms(trainer.model):
            raise ConfigError("--slim-lambda: the model has no batch norm, whose γ network slimming penalises")
        trainer.add_hook("after_backward", slim_hook(cfg.slim_lambda))
    if cfg.prune_schedule != "none":
        if not prunable_modules(trainer.model):
            raise ConfigError("--prune-schedule: the model has no conv or linear layers to prune")
        schedule = PruneSchedule(cfg)
        if schedule.layer_ratios is not None:
            check_layers(schedule.layer_ratios, weight_layers(trainer.model), cfg.prune_ratio_file,
                         "conv/linear layers")
            trainer.extra_state[RATIOS_KEY] = dict(schedule.layer_ratios)
        trainer.add_hook("after_step", schedule)
        schedule.at(trainer, 0)


def check_resumed(trainer, state: dict, path: str) -> None:
    """Refuse to resume a checkpoint pruned to other ratios than the ratio file holds now: its path is the same
    (the configuration matches), but the run would go on to other targets. A checkpoint written before the ratios
    were kept has none to compare."""
    saved, now = state.get(RATIOS_KEY), trainer.extra_state.get(RATIOS_KEY)
    changes = ratio_changes(saved, now) if saved is not None and now is not None else []
    if changes:
        raise ConfigError(f"{path} was pruned to other ratios than the ratio file {trainer.cfg.prune_ratio_file} "
                          f"now holds ({', '.join(changes[:4])}{' ...' if len(changes) > 4 else ''}); restore the "
                          f"file, or use another --out")


def ratio_changes(old: dict, new: dict) -> list:
    """'layer: old -> new' for every layer whose ratio differs ('-': not in that file), in the files' order."""
    names = list(dict.fromkeys([*old, *new]))
    return [f"{n}: {old.get(n, '-')} -> {new.get(n, '-')}" for n in names if old.get(n) != new.get(n)]
