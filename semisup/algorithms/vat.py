"""Virtual Adversarial Training with entropy minimisation (official ``vat.py``, ``third_party/vat_utils.py``).

    d  = ξ·N(r), r ~ N(0, I);  g = ∇_d mean_b KL(p(u) ‖ p(u + d));  r_adv = ε·N(g)     (one power iteration)
    N(v) = v' / sqrt(1e-6 + Σ v'²),  v' = v / (1e-12 + max|v|)                          (per image)
    loss_u   = mean_b KL(p(u + r_adv) ‖ sg[p(u)])      (official, --vat-kl reverse; standard VAT: forward)
    loss_ent = mean_b H(p(u))                           (gradient included)
    loss     = loss_x + w(n)·0.3·loss_u + 0.06·loss_ent (only the VAT term ramps)

The official loss's KL runs from the adversarial prediction to the clean one, the reverse of the power
iteration's and of the VAT paper's; it is the default here, ``--vat-kl forward`` the paper's direction. The
perturbation is found once per optimizer step on the whole batch, with gradients for ``d`` only (no parameter
gradient, so neither DDP nor the accumulated gradients see it), and always in fp32: ξ = 1e-6 vanishes in bf16.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..losses import entropy_sum, kl_sum, lambda_u_at
from ..models import frozen_bn_stats
from .base import Algorithm, Models, Rows, batch_statistics, one_hot
from .supervised import labeled_loss

NAME = "vat"
CLASS = "VAT"
STEP_COST = 13  # clean forward 1, power iteration 3, labeled, clean and adversarial passes 3 each
SUMMARY = "VAT + entropy minimisation: consistency under the most sensitive small input perturbation"
RAMP_SHARE = 0.4  # the consistency weight ramps linearly over 40 % of the run (warmup_pos)
OPTIONS = {
    "lambda_u": (0.3, "weight of the unlabeled (consistency) loss after its ramp-up"),
    "lambda_ent": (0.06, "weight of the entropy term on the clean unlabeled predictions (constant, not ramped)"),
    "vat_eps": (6.0, "the perturbation's L2 norm ε, in the [-1, 1] input space"),
    "vat_xi": (1e-6, "the power iteration's step ξ"),
    "vat_kl": ("reverse", "reverse: KL(p_adv ‖ p_clean), the official loss; forward: KL(p_clean ‖ p_adv), the "
                          "VAT paper's", ("reverse", "forward")),
    "smoothing": (0.0, "label smoothing of the supervised term"),
}


def normalize(v: torch.Tensor) -> torch.Tensor:
    """vat_utils.get_normalized_vector: divide by the max |v| of each image, then by its L2 norm (with 1e-6)."""
    dims = tuple(range(1, v.dim()))
    v = v / (1e-12 + v.abs().amax(dim=dims, keepdim=True))
    return v / torch.sqrt(1e-6 + v.pow(2).sum(dim=dims, keepdim=True))


def adversarial_perturbation(model: nn.Module, u: torch.Tensor, clean_logits: torch.Tensor, xi: float, eps: float,
                             d: torch.Tensor = None) -> torch.Tensor:
    """r_adv = ε·N(∇_d mean_b KL(p_clean ‖ p(u + d))) at d = ξ·N(r): one power iteration from ``d`` (default
    r ~ N(0, I)). Runs ``model`` in training-mode batch norm with frozen statistics; no parameter gradient."""
    d = xi * normalize(torch.randn_like(u) if d is None else d)
    d.requires_grad_(True)
    with torch.enable_grad(), batch_statistics(model):
        dist = kl_sum(clean_logits, model(u + d)) / len(u)
        grad, = torch.autograd.grad(dist, d)
    return eps * normalize(grad)


class VAT(Algorithm):
    unlabeled_views = 1
    terms = ("x", "u", "ent")

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        u, cfg = x_ulb[0], self.cfg
        with torch.autocast(u.device.type, enabled=False), torch.no_grad(), batch_statistics(models.live):
            clean = models.live(u.float()).float()
        with torch.autocast(u.device.type, enabled=False):
            r_adv = adversarial_perturbation(models.live, u.float(), clean, cfg.vat_xi, cfg.vat_eps)
        rows = {"x": x_lb, "t": one_hot(y_lb, self.num_classes, cfg.smoothing), "u": u,
                "u_adv": (u.float() + r_adv).to(u.dtype), "clean": clean}
        return Rows(rows, len(x_lb))

    def loss(self, net: nn.Module, micro: Rows, autocast) -> Dict[str, torch.Tensor]:
        loss_x = labeled_loss(net, micro, autocast)
        with frozen_bn_stats(net), autocast():
            logits_u, logits_adv = net(micro["u"]), net(micro["u_adv"])
        clean = micro["clean"]
        kl = kl_sum(logits_adv, clean) if self.cfg.vat_kl == "reverse" else kl_sum(clean, logits_adv)
        return {"x": loss_x, "u": kl / micro.full, "ent": entropy_sum(logits_u) / micro.full}

    def weights(self, images: float) -> Dict[str, float]:
        return {"u": lambda_u_at(images, self.cfg.lambda_u, self.cfg.rampup_images), "ent": self.cfg.lambda_ent}
