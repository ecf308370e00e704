"""CTAugment as FixMatch (CTA) and ReMixMatch use it (google-research/fixmatch ``libml/ctaugment.py``,
``cta/lib/train.py``): depth 2, threshold 0.8, decay 0.99, one weight vector per op parameter, all ones at start.

The state is a plain dict of float32 tensors, so a checkpoint restores it exactly and loads with
``torch.load(weights_only=True)``. The weight update is a pure function of (weights, policies, proximities) applied
in list order: processes that apply the same all-gathered lists in the same (rank) order hold identical weights,
with no other communication. Drawing policies uses a ``torch.Generator`` when given, torch's global RNG otherwise.
"""
import torch

from .cta_ops import CTA_OPS, cta_apply

NAMES = tuple(CTA_OPS)
DEPTH, THRESHOLD, DECAY = 2, 0.8, 0.99


def proximity(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``1 - 0.5 * sum_c |p_c - onehot(y)_c|`` per probe image (1 = right and sure, 0 = all mass elsewhere);
    ``probs`` are the softmax of the (EMA, inference-mode) model on the probe images (``cta/lib/train.py:70-76``)."""
    onehot = torch.nn.functional.one_hot(labels.long(), probs.shape[-1]).to(probs.dtype)
    return 1 - 0.5 * (probs - onehot).abs().sum(-1)


def bin_probabilities(weights: torch.Tensor, decay: float = DECAY, threshold: float = THRESHOLD) -> torch.Tensor:
    """The official ``rate_to_p`` in float32: ``p = w + (1 - decay)``, ``p /= max(p)``, ``p[p < threshold] = 0``;
    the draw is proportional to ``p``, so only bins within ``threshold`` of the best are ever drawn."""
    p = weights + (1 - decay)
    p = p / p.max()
    return torch.where(p < threshold, torch.zeros_like(p), p)


def initial_weights() -> dict:
    """One float32 vector of ones per op parameter, by op name (identity has none)."""
    return {name: [torch.ones(n) for n in bins] for name, (_, bins) in CTA_OPS.items()}


def update_weights(weights: dict, policies: list, proximities, decay: float = DECAY) -> dict:
    """New weights after the probes, in order: for each (op, value v) of a probe's policy, bin
    ``i = int(v * n_bins * 0.999)`` becomes ``w[i] * decay + proximity * (1 - decay)`` (``ctaugment.py:80-84``),
    computed in double and stored in float32 as the official numpy code does. ``weights`` is left untouched."""
    out = {name: [w.clone() for w in ws] for name, ws in weights.items()}
    for policy, prox in zip(policies, torch.as_tensor(proximities, dtype=torch.float64).tolist()):
        for name, values in policy:
            for v, w in zip(values, out[name]):
                i = int(v * len(w) * 0.999)
                w[i] = float(w[i]) * decay + prox * (1 - decay)
    return out


class CTAugment:
    """Learned bin weights and the policies drawn from them.

    ``policy(probe=True)``: 2 ops uniformly, uniform values (probe images, whose error trains the weights);
    ``policy(probe=False)``: 2 ops uniformly, each value uniform inside a bin drawn from ``bin_probabilities``.
    ``__call__`` is FixMatch's strong view (the policy plus a full cutout, ``fixmatch.py:40-41``), or with
    ``cutout=False`` ReMixMatch's, ``apply(img, cta.policy(probe=False))``.
    """

    def __init__(self, depth: int = DEPTH, threshold: float = THRESHOLD, decay: float = DECAY):
        self.depth, self.threshold, self.decay = depth, threshold, decay
        self.weights = initial_weights()

    def policy(self, probe: bool, generator=None) -> list:
        """``[(op name, [value per parameter]), ...]`` of length ``depth``, plain Python values (picklable)."""
        out = []
        for _ in range(self.depth):
            name = NAMES[torch.randint(len(NAMES), (1,), generator=generator).item()]
            bins = self.weights[name]
            rnd = torch.rand(len(bins), generator=generator, dtype=torch.float64).tolist()
            if probe:
                out.append((name, rnd))
                continue
            picks = [torch.multinomial(bin_probabilities(w, self.decay, self.threshold).double(), 1,
                                       generator=generator).item() for w in bins]
            out.append((name, [(k + r) / len(w) for k, r, w in zip(picks, rnd, bins)]))
        return out

    @staticmethod
    def apply(img: torch.Tensor, policy: list, generator=None) -> torch.Tensor:
        """Apply a policy to a uint8 RGB image (3, H, W)."""
        return cta_apply(img, policy, generator)

    def __call__(self, img: torch.Tensor, generator=None, cutout: bool = True) -> torch.Tensor:
        """The CTA strong view of a (3, H, W) or (N, 3, H, W) uint8 tensor: FixMatch's (the policy, then a full
        cutout) or, ``cutout=False``, ReMixMatch's (the policy alone, ``libml/augment.py:317-319``)."""
        if img.dim() == 4:
            return torch.stack([self(x, generator, cutout) for x in img])
        return cta_apply(img, self.policy(False, generator) + ([("cutout", [1.0])] if cutout else []), generator)

    def probe(self, img: torch.Tensor, generator=None):
        """A probe image and its policy; give the policy back to ``update`` with the probe's proximity."""
        policy = self.policy(True, generator)
        return cta_apply(img, policy, generator), policy

    def update(self, policies: list, proximities) -> None:
        """Apply ``update_weights`` for a list of probe policies and their proximities (one per probe)."""
        self.weights = update_weights(self.weights, policies, proximities, self.decay)

    def state_dict(self) -> dict:
        """Tensors, lists, numbers and strings only (``torch.load(weights_only=True)`` reads it back)."""
        return {"depth": self.depth, "threshold": self.threshold, "decay": self.decay,
                "weights": {name: [w.clone() for w in ws] for name, ws in self.weights.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["weights"]) != set(NAMES):
            raise ValueError(f"CTAugment state has ops {sorted(state['weights'])}, expected {sorted(NAMES)}")
        self.depth, self.threshold, self.decay = state["depth"], state["threshold"], state["decay"]
        self.weights = {name: [w.clone().float() for w in ws] for name, ws in state["weights"].items()}
