"""MixUpLoss and the λu ramp-up, as pure functions."""
import torch


def soft_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_rows -Σ_c t log softmax(logits): cross-entropy against soft (mixed) targets, summed over rows."""
    return -(targets * logits.float().log_softmax(-1)).sum()


def mixup_loss(logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor, targets_u: torch.Tensor,
               denom_x: float = None, denom_u: float = None):
    """(loss_x, loss_u) of MixMatch.

    loss_x: cross-entropy of X' against its mixed targets, averaged over rows.
    loss_u: squared error between softmax(U') and its mixed targets, averaged over rows × classes.
    ``denom_x``/``denom_u`` replace the row counts when a batch is split into micro-batches, so that summing the
    micro-batch losses gives the full-batch loss.
    """
    denom_x = len(logits_x) if denom_x is None else denom_x
    denom_u = logits_u.numel() if denom_u is None else denom_u
    loss_x = soft_cross_entropy_sum(logits_x, targets_x) / denom_x
    loss_u = (logits_u.float().softmax(-1) - targets_u).pow(2).sum() / denom_u
    return loss_x, loss_u


def linear_rampup(position: float, length: float) -> float:
    """position / length clipped to [0, 1]; 1 when there is no ramp-up."""
    if length <= 0:
        return 1.0
    return min(max(position / length, 0.0), 1.0)


def lambda_u_at(images: float, lambda_u: float, rampup_images: float) -> float:
    """The unlabeled-loss weight after ``images`` labeled images: λu · min(images / rampup_images, 1).

    The official code counts the ramp-up in images (``warmup_kimg << 10`` against a step counter that advances by
    the batch size), so a larger batch or more processes keep the paper's schedule. The step counting from 0,
    the first step sees 0 images and weight 0.
    """
    return lambda_u * linear_rampup(images, rampup_images)


# ----- the baselines' terms (official pi_model.py, mean_teacher.py, ict.py, mixup.py, vat.py) -------------------
def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Logits in fp32 at least (bf16/fp16 under autocast are widened; fp64 stays fp64)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def softmax_mse_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_rows Σ_c (softmax(logits) - targets)²: the Π-model / Mean Teacher / ICT consistency before its mean over
    batch × classes (``tf.losses.mean_squared_error`` of softmaxes)."""
    return (_wide(logits).softmax(-1) - targets).pow(2).sum()


def entropy_sum(logits: torch.Tensor) -> torch.Tensor:
    """Σ_rows H(softmax(logits)) in nats, gradient included (VAT's entropy minimisation)."""
    log_p = _wide(logits).log_softmax(-1)
    return -(log_p.exp() * log_p).sum()


def kl_sum(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Σ_rows KL(softmax(p_logits) ‖ softmax(q_logits)) = Σ p (log p - log q)."""
    log_p, log_q = _wide(p_logits).log_softmax(-1), _wide(q_logits).log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum()


def draw_mix_lambda(n: int, alpha: float) -> torch.Tensor:
    """Per-row λ' = max(λ, 1 - λ), λ ~ Beta(α, α): the official baselines' mixup coefficient."""
    lam = torch.distributions.Beta(alpha, alpha).sample((n,))
    return torch.maximum(lam, 1 - lam)


def mix_reversed(x: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor):
    """x' = λ x + (1 - λ) x[::-1] and the same for the targets: the official MixUp, ICT and fs_mixup pair each row
    with the reversed batch (``x[::-1]``), not a random permutation."""
    lam = lam.to(x.device)
    lam_x = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return x * lam_x + x.flip(0) * (1 - lam_x), targets * lam[:, None] + targets.flip(0) * (1 - lam[:, None])
