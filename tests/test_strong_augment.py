"""RandAugment's and CTAugment's policies: the official draws, weight update, threshold rule and exact resume."""
import io
from collections import Counter

import pytest
import torch

from semisup.strong import CTAugment, RandAugment, bin_probabilities, proximity, ra_policy, update_weights
from semisup.strong.ctaugment import NAMES as CTA_NAMES
from semisup.strong.ctaugment import initial_weights
from semisup.strong.ops import GRAY
from semisup.strong.randaugment import NAMES as RA_NAMES


def _images(n=4, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_ra_draws_two_ops_with_replacement_each_kept_half_the_time():
    g = torch.Generator().manual_seed(0)
    always = [ra_policy(prob=1.0, generator=g) for _ in range(2000)]
    assert all(len(p) == 2 for p in always)
    assert sum(p[0][0] == p[1][0] for p in always) > 0.03 * 2000  # 1/14 of pairs repeat an op
    levels = Counter(lv for p in always for _, lv, _ in p)
    assert set(levels) == set(range(1, 10))
    assert Counter(name for p in always for name, _, _ in p).keys() == set(RA_NAMES)
    kept = Counter(len(ra_policy(generator=g)) for _ in range(4000))
    for n, share in [(0, 0.25), (1, 0.5), (2, 0.25)]:
        assert abs(kept[n] / 4000 - share) < 0.03
    signs = [neg for p in always for name, _, neg in p if name == "Rotate"]
    assert 0.4 < sum(signs) / len(signs) < 0.6
    assert not any(neg for p in always for name, _, neg in p if name == "Solarize")


def test_ra_always_ends_with_a_gray_cutout():
    x = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    for seed in range(30):
        out = RandAugment(prob=0.0)(x, torch.Generator().manual_seed(seed))
        patch = (out == GRAY).all(0)
        assert 64 <= patch.sum() <= 256 and torch.equal(out[:, ~patch], x[:, ~patch])
    outs = RandAugment()(_images(16), torch.Generator().manual_seed(1))
    assert all((o == GRAY).all(0).sum() >= 64 for o in outs)


def test_ra_is_deterministic_under_a_seed_and_on_the_global_rng():
    ra, x = RandAugment(), _images(8)
    a, b = ra(x, torch.Generator().manual_seed(3)), ra(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, ra(x, torch.Generator().manual_seed(4)))
    torch.manual_seed(5)
    c = ra(x)
    torch.manual_seed(5)
    assert torch.equal(c, ra(x)) and c.shape == x.shape and c.dtype == torch.uint8


def test_proximity_of_the_model_prediction():
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    assert torch.allclose(proximity(probs, torch.tensor([1, 1, 1])), torch.tensor([1.0, 0.5, 0.0]))
    uniform = torch.full((1, 10), 0.1)
    assert torch.allclose(proximity(uniform, torch.tensor([3])), torch.tensor([0.1]))


def test_weight_update_by_hand_one_and_two_probes():
    w0 = initial_weights()
    policy = [("rotate", [0.5]), ("rescale", [1.0, 0.0])]
    w1 = update_weights(w0, [policy], [0.5])
    # bin int(0.5 * 17 * 0.999) = 8 of rotate: 1 * 0.99 + 0.5 * 0.01; v = 1.0 lands in the last bin, 16, not 17.
    assert w1["rotate"][0][8].item() == pytest.approx(0.995, abs=1e-7)
    assert w1["rescale"][0][16].item() == pytest.approx(0.995, abs=1e-7)
    assert w1["rescale"][1][0].item() == pytest.approx(0.995, abs=1e-7)
    assert torch.all(w0["rotate"][0] == 1), "update_weights must not touch its input"
    changed = sum(int((w != 1).sum()) for ws in w1.values() for w in ws)
    assert changed == 3
    w2 = update_weights(w1, [[("rotate", [0.52])]], [0.0])  # same bin: 0.995 * 0.99 + 0
    assert w2["rotate"][0][8].item() == pytest.approx(0.98505, abs=1e-7)
    w3 = update_weights(w0, [[("rotate", [0.5])], [("rotate", [0.5])]], [0.5, 1.0])
    assert w3["rotate"][0][8].item() == pytest.approx(0.995 * 0.99 + 0.01, abs=1e-7)
    assert w3["rotate"][0].dtype == torch.float32


def test_threshold_rule():
    w = torch.tensor([1.0, 0.5, 0.79, 0.8, 0.0])
    p = bin_probabilities(w)
    # (w + 0.01) / 1.01: 0.505, 0.792 and 0.0099 fall under 0.8; 0.81 / 1.01 = 0.802 stays.
    assert torch.equal(p > 0, torch.tensor([True, False, False, True, False]))
    cta = CTAugment()
    cta.weights["rotate"][0] = torch.zeros(17)
    cta.weights["rotate"][0][5] = 1.0
    g = torch.Generator().manual_seed(0)
    values = [v for _ in range(600) for name, vs in cta.policy(False, g) if name == "rotate" for v in vs]
    assert values and all(5 / 17 <= v < 6 / 17 for v in values)
    probes = [v for _ in range(600) for name, vs in cta.policy(True, g) if name == "rotate" for v in vs]
    assert min(probes) < 0.2 and max(probes) > 0.8  # probes ignore the weights


def test_policies_draw_two_of_all_19_ops():
    cta, g = CTAugment(), torch.Generator().manual_seed(1)
    policies = [cta.policy(probe, g) for probe in (True, False) for _ in range(500)]
    assert all(len(p) == 2 for p in policies)
    assert {name for p in policies for name, _ in p} == set(CTA_NAMES) and len(CTA_NAMES) == 19
    assert all(len(vs) == len(cta.weights[name]) and all(0 <= v <= 1 for v in vs)
               for p in policies for name, vs in p)


def test_cta_strong_view_and_probe():
    cta, x = CTAugment(), _images(6)
    out = cta(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, cta(x, torch.Generator().manual_seed(0)))
    probe, policy = cta.probe(x[0], torch.Generator().manual_seed(2))
    assert probe.shape == x[0].shape and len(policy) == 2


def test_state_round_trip_is_exact_and_weights_only():
    g = torch.Generator().manual_seed(0)
    cta = CTAugment()
    for _ in range(20):
        policies = [cta.policy(True, g) for _ in range(64)]
        cta.update(policies, torch.rand(64, generator=g))
    buf = io.BytesIO()
    torch.save(cta.state_dict(), buf)
    buf.seek(0)
    resumed = CTAugment()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for name in CTA_NAMES:
        for a, b in zip(cta.weights[name], resumed.weights[name]):
            assert torch.equal(a, b)
    seeded = torch.Generator().manual_seed
    assert cta.policy(False, seeded(9)) == resumed.policy(False, seeded(9))


def test_same_gathered_proximities_give_identical_weights():
    """Two processes applying the same all-gathered lists in rank order end with bit-identical weights."""
    g = torch.Generator().manual_seed(4)
    policies = [CTAugment().policy(True, g) for _ in range(128)]
    prox = torch.rand(128, generator=g)
    a, b = CTAugment(), CTAugment()
    a.update(policies[:64], prox[:64])
    a.update(policies[64:], prox[64:])
    b.update(policies, prox.tolist())
    assert all(torch.equal(x, y) for n in CTA_NAMES for x, y in zip(a.weights[n], b.weights[n]))
