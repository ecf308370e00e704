"""WRN-28-2 as the official code builds it, the large WRN-28, and the registry."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from semisup.models import MODELS, create_model, model_from_arch
from semisup.models.wideresnet import Conv2d, same_padding


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_wrn_28_2_has_exactly_1467610_parameters():
    assert n_params(create_model("wrn-28-2", 10)) == 1_467_610


def test_wrn_28_large_has_25976769_parameters():
    """The paper's large model (135 filters per layer, 'about 26M'): widths 135/270/540 after a 16-filter stem."""
    model = create_model("wrn-28-large", 10)
    assert n_params(model) == 25_976_769
    assert model.arch["widths"] == [135, 270, 540] and model.fc.in_features == 540


def test_structure_strides_and_output():
    model = create_model("wrn-28-2")
    assert len(model.blocks) == 12
    assert [b.conv1.stride[0] for b in model.blocks] == [1, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1]
    assert [b.activate_before_residual for b in model.blocks] == [True] + [False] * 11
    assert [b.shortcut is not None for b in model.blocks] == [True, False, False, False] * 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert create_model("wrn-10-tiny", num_classes=7)(torch.zeros(3, 3, 32, 32)).shape == (3, 7)


def test_batch_norm_momentum_and_epsilon_and_no_conv_bias():
    model = create_model("wrn-28-2")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 * 12 + 1
    assert all(m.momentum == 0.001 and m.eps == 0.001 for m in bns)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.fc.bias is not None


def test_leaky_relu_slope_is_0_1():
    """The features are leaky_relu(bn(x), 0.1) averaged over space: check against the captured bn output."""
    torch.manual_seed(0)
    model = create_model("wrn-10-tiny")
    captured = {}
    model.bn.register_forward_hook(lambda m, i, out: captured.update(y=out))
    features = model.features(torch.randn(4, 3, 32, 32))
    y = captured["y"]
    assert (y < 0).any()
    torch.testing.assert_close(features, F.leaky_relu(y, 0.1).mean((2, 3)))
    assert not torch.allclose(features, F.leaky_relu(y, 0.2).mean((2, 3)))


def test_official_initialisation():
    torch.manual_seed(0)
    model = create_model("wrn-28-2")
    conv = model.blocks[-1].conv2  # 128 x 128 x 3 x 3: enough samples to estimate the std closely
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (9 * 128)), rel=0.02)
    glorot = math.sqrt(2.0 / (128 + 10))
    assert model.fc.weight.std().item() == pytest.approx(glorot, rel=0.15)
    assert torch.equal(model.fc.bias, torch.zeros(10))


def test_unknown_model_is_refused_with_the_choices():
    with pytest.raises(ValueError) as exc:
        create_model("resnet-50")
    assert "resnet-50" in str(exc.value)
    assert all(name in str(exc.value) for name in MODELS)


def test_model_from_arch_round_trips_smaller_inner_widths():
    """A slimmed network (smaller widths inside each block) is rebuilt from its saved arch with its weights."""
    inner = [12, 20, 32, 32, 64, 40, 64, 64, 100, 128, 96, 128]
    torch.manual_seed(0)
    model = create_model("wrn-28-2", 10, inner=inner).eval()
    assert [b.conv1.out_channels for b in model.blocks] == inner
    assert n_params(model) < 1_467_610
    rebuilt = model_from_arch("wrn-28-2", model.arch).eval()
    assert rebuilt.arch == model.arch and model.arch["num_classes"] == 10
    rebuilt.load_state_dict(model.state_dict())  # strict: every shape matches
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="depth must be 6n\\+4"):
        create_model("wrn-28-2", depth=27)
    with pytest.raises(ValueError, match="expected 12 values, got 3"):
        create_model("wrn-28-2", inner=[8, 8, 8])


def _conv_by_hand(x, w, stride, pad_before):
    """out[o, i, j] = sum over c, u, v of w[o, c, u, v] * x[c, i*stride + u - pad_before, ...] (zero outside)."""
    n, k = x.shape[-1], w.shape[-1]
    size = -(-n // stride)
    out = torch.zeros(x.shape[0], w.shape[0], size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            for u in range(k):
                for v in range(k):
                    r, c = i * stride + u - pad_before, j * stride + v - pad_before
                    if 0 <= r < n and 0 <= c < n:
                        out[:, :, i, j] += x[:, :, r, c].double() @ w[:, :, u, v].double().T
    return out


def test_same_padding_is_tf_rule_by_hand():
    # TF: out = ceil(n / s), total = max((out - 1) * s + k - n, 0), before = total // 2, the rest after.
    assert same_padding(32, 3, 2) == (0, 1)  # 15 * 2 + 3 - 32 = 1: the extra column goes after
    assert same_padding(31, 3, 2) == (1, 1)  # 15 * 2 + 3 - 31 = 2
    assert same_padding(96, 3, 2) == (0, 1) and same_padding(32, 3, 1) == (1, 1)
    assert same_padding(32, 1, 2) == (0, 0) and same_padding(31, 1, 2) == (0, 0)


@pytest.mark.parametrize("n, pad_before", [(8, 0), (7, 1)])  # even input: pads (0, 1); odd: (1, 1)
def test_strided_3x3_convolution_samples_as_tf_same(n, pad_before):
    torch.manual_seed(0)
    conv = Conv2d(3, 4, 3, stride=2)
    x = torch.randn(2, 3, n, n)
    torch.testing.assert_close(conv(x), _conv_by_hand(x, conv.weight.detach(), 2, pad_before).float())
    if n % 2 == 0:  # PyTorch's symmetric padding=1 samples one pixel off from the official network
        sym = F.conv2d(x, conv.weight, stride=2, padding=1)
        assert not torch.allclose(sym, conv(x), atol=1e-3)


def test_strided_pointwise_convolution_is_the_subsampled_input():
    """A stride-2 1x1 convolution (no padding under TF's rule) equals a stride-1 one on x[:, :, ::2, ::2], including
    in channels-last with 4 input channels, whose stride-2 backward corrupts memory in PyTorch's CPU kernels."""
    torch.manual_seed(0)
    conv = Conv2d(4, 8, 1, stride=2)
    x = torch.randn(3, 4, 16, 16).to(memory_format=torch.channels_last).requires_grad_()
    ref = F.conv2d(x.detach().contiguous(), conv.weight.detach(), stride=2)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert x.grad[:, :, 1::2].abs().sum() == 0 and x.grad[:, :, ::2, ::2].abs().sum() > 0


def test_every_strided_conv_of_the_wrn_pads_as_tf():
    model = create_model("wrn-28-2")
    strided = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert len(strided) == 4 and all(isinstance(m, Conv2d) and m.padding == (0, 0) for m in strided)
    assert {m.kernel_size for m in strided} == {(3, 3), (1, 1)}


def wrn_params_by_hand(stem, widths, depth, classes):
    """Parameters of the official WRN from its layer shapes: 3x3 stem; per block bn1 (2·cin), 3x3 conv1, bn2,
    3x3 conv2 and, in a stage's first block, a 1x1 shortcut; then the last bn and the classifier (with bias)."""
    total, cin = 3 * 3 * 3 * stem, stem
    for width in widths:
        for r in range((depth - 4) // 6):
            total += 2 * cin + 9 * cin * width + 2 * width + 9 * width * width + (cin * width if r == 0 else 0)
            cin = width
    return total + 2 * cin + cin * classes + classes


def test_parameter_counts_per_dataset_by_hand():
    # WRN-28-2 at 100 classes (CIFAR-100): the classifier grows from 128·10 + 10 to 128·100 + 100.
    assert n_params(create_model("wrn-28-2", 100)) == 1_467_610 + 128 * 90 + 90 == 1_479_220
    assert wrn_params_by_hand(16, (32, 64, 128), 28, 10) == 1_467_610
    # STL-10's 96x96: floor(log2 96) - 2 = 4 scales, widths 32/64/128/256. The fourth stage adds a first block
    # (bn 2·128, conv 9·128·256, bn 2·256, conv 9·256·256, shortcut 128·256) and three more (2·256 + 2·9·256² +
    # 2·256 each); the final bn and the classifier read 256 channels instead of 128.
    stl = create_model("wrn-28-2", 10, image_size=96)
    assert stl.arch["widths"] == [32, 64, 128, 256] and len(stl.blocks) == 16
    fourth = (2 * 128 + 9 * 128 * 256 + 2 * 256 + 9 * 256 * 256 + 128 * 256) + 3 * (2 * 256 + 2 * 9 * 256 ** 2
                                                                                  + 2 * 256)
    assert n_params(stl) == 1_467_610 - (2 * 128 + 128 * 10 + 10) + fourth + 2 * 256 + 256 * 10 + 10 == 5_929_434
    assert n_params(stl) == wrn_params_by_hand(16, (32, 64, 128, 256), 28, 10)
    # The large model (135 filters) at 100 classes: 540 features into 100 classes.
    large = create_model("wrn-28-large", 100)
    assert n_params(large) == 25_976_769 + 540 * 90 + 90 == wrn_params_by_hand(16, (135, 270, 540), 28, 100)
    assert create_model("wrn-28-large", 10, image_size=96).arch["widths"] == [135, 270, 540, 1080]
    assert stl(torch.zeros(2, 3, 96, 96)).shape == (2, 10)


def test_saved_arch_rebuilds_the_network_of_its_image_size():
    stl = create_model("wrn-10-tiny", 10, image_size=96)
    rebuilt = model_from_arch("wrn-10-tiny", stl.arch)  # no image size given: the widths say it
    assert rebuilt.arch == stl.arch and n_params(rebuilt) == n_params(stl)
    assert create_model("wrn-28-2", 10, image_size=64).arch["widths"] == [32, 64, 128, 256]  # floor(log2 64) - 2
    assert create_model("wrn-28-2", 10, image_size=48).arch["widths"] == [32, 64, 128]  # floor(5.58) - 2 = 3
