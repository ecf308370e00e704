"""MixUpLoss and the λu ramp-up against values worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from semisup.config import Config
from semisup.losses import lambda_u_at, linear_rampup, mixup_loss, soft_cross_entropy_sum

LN3 = math.log(3.0)
# Rows with softmax [1/4, 3/4] and [1/2, 1/2].
LOGITS_X = torch.tensor([[0.0, LN3], [0.0, 0.0]])
TARGETS_X = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
LOGITS_U = torch.tensor([[0.0, 0.0], [0.0, LN3]])
TARGETS_U = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_mixup_loss_by_hand():
    loss_x, loss_u = mixup_loss(LOGITS_X, TARGETS_X, LOGITS_U, TARGETS_U)
    # row 1: -(0.5 ln 1/4 + 0.5 ln 3/4) = ln 4 - 0.5 ln 3; row 2: -ln 1/2 = ln 2; mean over the two rows
    assert loss_x.item() == pytest.approx((math.log(4) - 0.5 * LN3 + math.log(2)) / 2, rel=1e-6)
    # squared errors: (0.5² + 0.5²) + (0.25² + 0.25²) = 0.625 over 2 rows × 2 classes
    assert loss_u.item() == pytest.approx(0.625 / 4, rel=1e-6)


def test_split_denominators_sum_to_the_full_batch_loss():
    full_x, full_u = mixup_loss(LOGITS_X, TARGETS_X, LOGITS_U, TARGETS_U)
    parts = [mixup_loss(LOGITS_X[i:i + 1], TARGETS_X[i:i + 1], LOGITS_U[i:i + 1], TARGETS_U[i:i + 1], 2, 4)
             for i in range(2)]
    torch.testing.assert_close(parts[0][0] + parts[1][0], full_x)
    torch.testing.assert_close(parts[0][1] + parts[1][1], full_u)


def test_soft_cross_entropy_with_one_hot_targets_is_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    torch.testing.assert_close(soft_cross_entropy_sum(logits, F.one_hot(y, 10).float()),
                               F.cross_entropy(logits, y, reduction="sum"))


def test_losses_are_float32_under_bf16_logits():
    loss_x, loss_u = mixup_loss(LOGITS_X.bfloat16(), TARGETS_X, LOGITS_U.bfloat16(), TARGETS_U)
    assert loss_x.dtype == torch.float32 and loss_u.dtype == torch.float32


@pytest.mark.parametrize("step, expected", [(0, 0.0), (1, 75 / 16384), (8192, 37.5), (16384, 75.0),
                                            (20000, 75.0)])
def test_lambda_u_ramps_linearly_over_16384_steps(step, expected):
    assert lambda_u_at(step * 64, 75.0, 1024 << 10) == pytest.approx(expected, rel=1e-12)  # batch 64, 1024 kimg


@pytest.mark.parametrize("steps_at_128", [0, 1, 100, 4096, 8192, 9000])
def test_rampup_counts_images_so_batch_128_follows_batch_64(steps_at_128):
    """The official ramp-up counts images: step s at batch 128 has the weight of step 2s at batch 64."""
    at_64 = Config(batch_size=64)
    at_128 = Config(batch_size=128)
    assert at_64.rampup_images == at_128.rampup_images == 1024 * 1024
    lam_128 = lambda_u_at(steps_at_128 * 128, 75.0, at_128.rampup_images)
    lam_64 = lambda_u_at(2 * steps_at_128 * 64, 75.0, at_64.rampup_images)
    assert lam_128 == lam_64
    assert lam_128 == pytest.approx(75.0 * min(steps_at_128 / 8192, 1.0))  # full weight at step 8,192 of 128


def test_rampup_steps_is_the_same_ramp_spelled_in_steps():
    assert Config(batch_size=128, rampup_steps=2048).rampup_images == 2048 * 128  # it wins over --rampup-kimg
    assert Config(rampup_kimg=128).rampup_images == 2048 * 64  # the ablation's 128 kimg: 2,048 steps of 64


def test_rampup_edges():
    assert linear_rampup(5, 0) == 1.0  # no ramp-up: full weight from the first step
    assert linear_rampup(-3, 10) == 0.0
    assert lambda_u_at(300, 75.0, 300) == 75.0 and lambda_u_at(150, 75.0, 300) == 37.5
