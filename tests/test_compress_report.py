"""Report numbers: parameters, MACs and sparsity of models small enough to count by hand."""
import pytest
import torch
import torch.nn as nn

from semisup.compress import report
from semisup.masks import set_masks
from semisup.models import create_model


def small_net():
    # conv 3->4, 3x3, padding 1 on 32x32: 32*32 positions * 4 out * 3 in * 9 = 110,592 MACs, 108 weights
    # linear 4096 -> 10: 40,960 MACs, 40,960 weights + 10 biases
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))


def test_params_and_macs_by_hand():
    net = small_net()
    assert report.count_params(net) == 108 + 40960 + 10
    assert report.count_macs(net) == 110592 + 40960


def test_strided_conv_macs():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False))  # 16*16 outputs * 8 * 3 * 9
    assert report.count_macs(net) == 16 * 16 * 8 * 27


def test_wrn_macs_match_the_layer_formula():
    model = create_model("wrn-10-tiny")
    expected, sizes = 0, {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    for m, shape in sizes.items():
        if isinstance(m, nn.Conv2d):
            expected += shape[2] * shape[3] * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            expected += m.in_features * m.out_features
    assert report.count_macs(model) == expected


def test_masks_change_sparsity_but_not_params_or_macs():
    net = small_net()
    dense = report.count_macs(net)
    mask = torch.ones(4, 3, 3, 3, dtype=torch.bool)
    mask[0] = False  # 27 of the conv's 108 weights
    set_masks(net, {"0.weight": mask})
    assert report.count_params(net) == 108 + 40960 + 10
    assert report.count_macs(net) == dense
    with torch.no_grad():
        net[2].weight[0, :5] = 0  # 5 more zeros, measured from the weights
    assert report.count_nonzero_params(net) == 108 + 40960 + 10 - 27 - 5
    assert report.sizes(net)["sparsity"] == pytest.approx(32 / (108 + 40960))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_compare_and_table(layout):
    net, half = small_net(), nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, bias=False), nn.Flatten(),
                                           nn.Linear(2 * 32 * 32, 10))
    both = report.compare(net, half, batches=(1, 2), repeats=1, memory_format=layout)
    assert set(both) == {"params", "nonzero_params", "macs", "sparsity", "latency_ms"}
    assert both["macs"] == {"before": 110592 + 40960, "after": (110592 + 40960) // 2}
    assert both["params"] == {"before": 108 + 40960 + 10, "after": 54 + 20480 + 10}
    assert set(both["latency_ms"]) == {"batch_1", "batch_2"}
    assert all(v > 0 for cell in both["latency_ms"].values() for v in cell.values())
    table = report.format_report(dict(both, test_acc={"before": None, "after": None}))
    assert "MACs" in table and "2.00x" in table and "accuracy" not in table
    net(torch.randn(1, 3, 32, 32)).sum().backward()  # timing left no inference tensors in the models
