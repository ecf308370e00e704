"""Network slimming's CIFAR networks (VGG-19, pre-activation ResNet-164, DenseNet-40): parameter counts, its
initialisation, rebuilding from ``arch``, and the channel selection after batch norms that read a shared stream."""
import json

import pytest
import torch
import torch.nn as nn

from semisup.models import create_model, model_from_arch
from semisup.models.vgg import VGG19

NAMES = ("vgg19", "preresnet-164", "densenet-40")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches of two through 164 layers are many tiny kernels: one thread runs them ~20x faster than threads
    competing for cores that other work holds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create_model(name, 10).eval() for name in NAMES}


def vgg_params(cfg, classes):
    """3x3 convs without bias, each with a batch norm (γ, β), then Linear(last width, classes)."""
    total, cin = 0, 3
    for v in (v for v in cfg if v != "M"):
        total, cin = total + 9 * cin * v + 2 * v, v
    return total + cin * classes + classes


def preresnet_params(n, classes):
    """3x3 stem (16); per block bn1 (2·in), 1x1 conv in→p, bn2, 3x3 conv p→p, bn3, 1x1 conv p→4p and, in a stage's
    first block, the 1x1 shortcut in→4p; then the final bn and Linear(256, classes)."""
    total, cin = 27 * 16, 16
    for p in (16, 32, 64):
        for r in range(n):
            total += 2 * cin + cin * p + 2 * p + 9 * p * p + 2 * p + 4 * p * p + (cin * 4 * p if r == 0 else 0)
            cin = 4 * p
    return total + 2 * cin + cin * classes + classes


def densenet_params(depth, growth, classes):
    """3x3 stem (2·growth); per layer a bn (2·c) and a 3x3 conv c→growth; per transition a bn and a 1x1 conv c→c;
    then the final bn and Linear(c, classes)."""
    n, c = (depth - 4) // 3, 2 * growth
    total = 27 * c
    for b in range(3):
        for _ in range(n):
            total, c = total + 2 * c + 9 * c * growth, c + growth
        if b < 2:
            total += 2 * c + c * c
    return total + 2 * c + c * classes + classes


def test_parameter_counts_at_10_and_100_classes():
    # The paper's Table 1: VGGNet 20.04M (CIFAR-10) and 20.08M (CIFAR-100), with bias-free convs as here; convs with
    # a bias would add 64·2 + 128·2 + 256·4 + 512·8 = 5,504 (20,040,522 and 20,086,692, i.e. 20.09M at CIFAR-100).
    assert n_params(create_model("vgg19", 10)) == vgg_params(VGG19, 10) == 20_035_018
    assert n_params(create_model("vgg19", 100)) == vgg_params(VGG19, 100) == 20_081_188
    # network-slimming's README: ResNet-164 1.70M (CIFAR-10) and 1.73M (CIFAR-100).
    assert n_params(create_model("preresnet-164", 10)) == preresnet_params(18, 10) == 1_703_258
    assert n_params(create_model("preresnet-164", 100)) == preresnet_params(18, 100) == 1_726_388
    # The paper's Table 1: DenseNet-40 1.02M (CIFAR-10) and 1.06M (CIFAR-100); the network it describes (growth 12,
    # no bottleneck, no compression) has 1.06M at CIFAR-10 and 1.10M at CIFAR-100.
    assert n_params(create_model("densenet-40", 10)) == densenet_params(40, 12, 10) == 1_059_298
    assert n_params(create_model("densenet-40", 100)) == densenet_params(40, 12, 100) == 1_100_428


def test_structure(models):
    vgg, resnet, densenet = (models[name] for name in NAMES)
    assert [m.out_channels for m in vgg.modules() if isinstance(m, nn.Conv2d)] == [v for v in VGG19 if v != "M"]
    assert len(resnet.blocks) == 54 and [b.conv2.stride[0] for b in resnet.blocks][::18] == [1, 2, 2]
    assert [b.shortcut is not None for b in resnet.blocks] == ([True] + [False] * 17) * 3
    assert [b.conv3.out_channels for b in resnet.blocks][::18] == [64, 128, 256]
    assert len(densenet.blocks) == 38 and densenet.fc.in_features == 456
    assert [densenet.blocks[i].bn.num_features for i in (12, 25)] == [168, 312]  # the transitions
    assert [len(m.arch["keep"]) for m in (resnet, densenet)] == [55, 39]  # one per selecting BN, the final BN last


@pytest.mark.parametrize("name", NAMES)
def test_network_slimming_initialisation(models, name):
    """γ = 0.5 and β = 0 in every batch norm (PyTorch's momentum and eps); convs bias-free, N(0, 2/(k·k·cout))."""
    model = models[name]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == {"vgg19": 16, "preresnet-164": 3 * 54 + 1, "densenet-40": 39}[name]
    assert all(torch.all(m.weight == 0.5) and torch.all(m.bias == 0) for m in bns)
    assert all(m.momentum == 0.1 and m.eps == 1e-5 for m in bns)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is None for m in convs)
    big = max(convs, key=lambda m: m.weight.numel())
    k = big.kernel_size[0] * big.kernel_size[1]
    assert big.weight.std().item() == pytest.approx((2.0 / (k * big.out_channels)) ** 0.5, rel=0.05)
    assert torch.equal(model.fc.bias, torch.zeros(10))


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_rebuild_from_arch(models, name):
    model = models[name]
    x = torch.randn(2, 3, 32, 32)
    assert create_model(name, 100)(x).shape == (2, 100)
    rebuilt = model_from_arch(name, json.loads(json.dumps(model.arch))).eval()  # arch survives JSON
    assert rebuilt.arch == model.arch
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    out = model(x)
    assert out.shape == (2, 10)
    torch.testing.assert_close(rebuilt(x), out)


def test_slimmed_vgg_and_resnet_widths_are_rebuilt():
    cfg = [v if v == "M" else max(v // 3, 1) for v in VGG19]
    vgg = create_model("vgg19", 10, cfg=cfg)
    assert n_params(vgg) == vgg_params(cfg, 10) < 20_035_018
    resnet_cfg = create_model("preresnet-164", 10).arch["cfg"]
    resnet_cfg[20][1:] = [7, 5]
    resnet = create_model("preresnet-164", 10, cfg=resnet_cfg)
    assert (resnet.blocks[20].conv1.out_channels, resnet.blocks[20].conv2.out_channels) == (7, 5)
    assert n_params(resnet) < 1_703_258
    for name, model in (("vgg19", vgg), ("preresnet-164", resnet)):
        rebuilt = model_from_arch(name, model.arch)
        rebuilt.load_state_dict(model.state_dict())
        assert rebuilt(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _randomise_batch_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.2, 1.0)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name, index, bn, reader", [
    ("preresnet-164", 0, "blocks.0.bn1", "blocks.0.conv1"),  # the stem's 16 channels
    ("preresnet-164", 20, "blocks.20.bn1", "blocks.20.conv1"),  # inside stage 2 (128 channels)
    ("preresnet-164", 54, "bn", "fc"),  # the final batch norm
    ("densenet-40", 3, "blocks.3.bn", "blocks.3.conv"),
    ("densenet-40", 12, "blocks.12.bn", "blocks.12.conv"),  # the first transition
    ("densenet-40", 38, "bn", "fc"),
])
def test_keeping_half_the_channels_is_the_full_model_with_their_bn_zeroed(name, index, bn, reader):
    """ReLU(BN(x)) is 0 on a channel whose γ and β are 0, so the next layer's weights on it do not matter: the model
    that selects the other channels (with those weights sliced to them) computes the same outputs."""
    torch.manual_seed(0)
    full = create_model(name, 10).eval()
    _randomise_batch_norms(full)
    width = full.get_submodule(bn).num_features
    kept = list(range(0, width, 2))
    keep = [None] * len(full.arch["keep"])
    keep[index] = kept
    narrow = create_model(name, 10, keep=keep).eval()
    weight = f"{reader}.weight"
    assert narrow.arch["keep"][index] == kept and narrow.get_submodule(reader).weight.shape[1] == len(kept)
    assert n_params(narrow) == n_params(full) - full.get_submodule(reader).weight[:, 1::2].numel()
    state = full.state_dict()
    assert narrow.state_dict().keys() == state.keys()  # the indices are not in the state dict
    narrow.load_state_dict({**state, weight: state[weight][:, kept]})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(narrow(x), full(x), atol=1e-3)  # the dropped channels still count in full
        dropped = full.get_submodule(bn)
        dropped.weight[1::2] = 0
        dropped.bias[1::2] = 0
        torch.testing.assert_close(narrow(x), full(x), atol=1e-5, rtol=1e-5)
    rebuilt = model_from_arch(name, narrow.arch).eval()
    rebuilt.load_state_dict(narrow.state_dict())
    torch.testing.assert_close(rebuilt(x), narrow(x))


def test_keeping_every_channel_gathers_nothing():
    keep = [None] * 39
    keep[5] = list(range(84))  # all of layer 5's 24 + 5·12 channels
    model = create_model("densenet-40", 10, keep=keep)
    assert model.arch["keep"] == [None] * 39 and model.blocks[5].select.index is None
    assert create_model("preresnet-164", 10).blocks[3].select.index is None


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="9n\\+2"):
        create_model("preresnet-164", depth=100)
    with pytest.raises(ValueError, match="3n\\+4"):
        create_model("densenet-40", depth=41)
    with pytest.raises(ValueError, match="expected 55 entries"):
        create_model("preresnet-164", keep=[None] * 54)
    with pytest.raises(ValueError, match="increasing channel indices in \\[0, 24\\)"):
        create_model("densenet-40", keep=[[3, 24]] + [None] * 38)
    with pytest.raises(ValueError, match="increasing"):
        create_model("densenet-40", keep=[[4, 3]] + [None] * 38)
    cfg = create_model("preresnet-164").arch["cfg"]
    cfg[1][0] = 32  # block 1 reads all 64 stream channels unless its keep says otherwise
    with pytest.raises(ValueError, match="first width"):
        create_model("preresnet-164", cfg=cfg)
    with pytest.raises(ValueError, match="positive conv widths"):
        create_model("vgg19", cfg=["M", 0])
