"""Network slimming's surgery on VGG-19, ResNet-164 and DenseNet-40: the smaller network computes, in eval mode,
what the full one computes with the dropped channels' γ and β zeroed (to 1e-5), for each network, also when a
slimmed network is slimmed again; the shape travels in ``arch``; the per-layer cap never empties a layer."""
import pytest
import torch

from semisup.compress import netslim
from semisup.models import create_model, model_from_arch

NETWORKS = ("vgg19", "preresnet-164", "densenet-40")


def _trained_like(name: str, seed: int = 0) -> torch.nn.Module:
    """A network whose γ, β and running statistics look trained (γ spread, some near zero, as sparsity leaves)."""
    torch.manual_seed(seed)
    model = create_model(name, 10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand_like(m.weight) ** 3
            m.bias.data.uniform_(-0.1, 0.1)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NETWORKS)
def test_removed_equals_masked_and_rebuilds_from_arch(name):
    model = _trained_like(name)
    x = torch.randn(2, 3, 32, 32)
    keeps = netslim.plan(model, 0.5)
    small = netslim.remove_channels(model, keeps)
    masked = netslim.mask_channels(model, keeps)
    assert _params(small) < _params(model)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=0, atol=1e-5)
        assert (small(x) - model(x)).abs().max() > 1e-4  # the cut changed the function: the comparison means something
    folded = netslim.fold_selections(small)  # the same cut without a gather: zero weights in the next conv
    assert not any(getattr(m, "index", None) is not None for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), small(x), rtol=0, atol=1e-5)
    rebuilt = model_from_arch(name, small.arch)
    rebuilt.load_state_dict(small.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), small(x), rtol=0, atol=0)
    again = netslim.plan(small, 0.3)  # a slimmed network slimmed again: selections compose
    smaller = netslim.remove_channels(small, again)
    with torch.no_grad():
        torch.testing.assert_close(smaller(x), netslim.mask_channels(small, again)(x), rtol=0, atol=1e-5)
    assert _params(smaller) < _params(small)


def test_dense_block_and_bottleneck_keep_their_streams():
    res = netslim.remove_channels(*(lambda m: (m, netslim.plan(m, 0.6)))(_trained_like("preresnet-164")))
    assert [b.conv3.out_channels for b in res.blocks][::18] == [64, 128, 256]  # the stream keeps its width
    assert any(b.select.index is not None for b in res.blocks)  # selections at the stream's batch norms
    dense = netslim.remove_channels(*(lambda m: (m, netslim.plan(m, 0.6)))(_trained_like("densenet-40")))
    assert all(layer.bn.num_features == w for layer, w in zip(dense.blocks, [24 + 12 * i for i in range(13)]))
    assert dense.fc.in_features < 456


def test_cap_never_empties_a_layer_and_refuses_past_it():
    model = _trained_like("vgg19")
    for m in model.modules():  # one whole layer near zero: a bare global threshold would empty it
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data[:] = 1e-6
            break
    keeps = netslim.plan(model, 0.7, max_layer_ratio=0.9)
    assert min(len(k) for k in keeps) >= 1 and len(keeps[0]) == 64 - int(0.9 * 64)
    with pytest.raises(ValueError, match="per-layer cap"):
        netslim.plan(model, 0.95, max_layer_ratio=0.9)


# ----- python -m semisup.compress on the three networks (small instances of each, saved as semisup checkpoints) ---
SMALL = {"vgg19": {"cfg": [8, 8, "M", 16, "M", 16]}, "preresnet-164": {"depth": 11}, "densenet-40": {"depth": 10,
                                                                                                      "growth": 4}}


def _checkpoint(tmp_path, name):
    from semisup.checkpoint import FORMAT, VERSION, atomic_save

    torch.manual_seed(0)
    model = create_model(name, 10, **SMALL[name])
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand_like(m.weight) ** 3
    path = str(tmp_path / f"{name}.pt")
    atomic_save({"format": FORMAT, "version": VERSION, "model_name": name, "arch": dict(model.arch),
                 "model": model.state_dict(), "ema": model.state_dict(), "step": 0}, path)
    return path, model.eval()


@pytest.mark.parametrize("selection", ["gather", "fold"])
@pytest.mark.parametrize("name", NETWORKS)
def test_compress_cli_slims_each_network(tmp_path, name, selection):
    from semisup.checkpoint import load_checkpoint
    from semisup.commands.compress import main as compress

    path, dense = _checkpoint(tmp_path, name)
    out = tmp_path / "slim"
    assert compress(["--checkpoint", path, "--out", str(out), "--method", "slim", "--ratio", "0.4",
                     "--selection", selection, "--latency-repeats", "1", "--threads", "1"]) == 0
    state = load_checkpoint(str(out / "pruned.pt"))
    small = model_from_arch(name, state["arch"]).eval()
    small.load_state_dict(state["model"])
    keeps = netslim.plan(dense, 0.4)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(small(x), netslim.mask_channels(dense, keeps)(x), rtol=0, atol=1e-5)
    with open(out / "report.json") as f:
        macs = __import__("json").load(f)["macs"]
    assert (macs["after"] < macs["before"]) or (selection == "fold" and name == "densenet-40")


@pytest.mark.parametrize("flags, message", [
    (["--ratio", "0.99"], "per-layer cap"),
    (["--method", "l1-filter"], "--method l1-filter and --prune-residual are for the WRN"),
])
def test_compress_cli_refuses_past_the_cap_and_wrn_only_methods(tmp_path, capsys, flags, message):
    from semisup.commands.compress import main as compress

    path, _ = _checkpoint(tmp_path, "densenet-40")
    out = tmp_path / "refused"
    argv = ["--checkpoint", path, "--out", str(out), "--method", "slim", "--ratio", "0.4", "--no-eval", *flags]
    assert compress(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()


# ----- bad input: one line, exit 2, nothing written ---------------------------------------------------------------
def _without_batch_norm(num_classes=10, image_size=32, **arch):
    """A VGG whose batch norms were left out, as a network trained without them would be."""
    model = create_model("vgg19", num_classes, **{**SMALL["vgg19"], **arch})
    model.layers = torch.nn.Sequential(*[torch.nn.Identity() if isinstance(m, torch.nn.BatchNorm2d) else m
                                         for m in model.layers])
    return model


def test_slimming_a_network_without_batch_norm_is_refused(tmp_path, capsys, monkeypatch, fake_cifar):
    from semisup import models
    from semisup.checkpoint import FORMAT, VERSION, atomic_save
    from semisup.commands.compress import main as compress
    from semisup.runner import main as train

    from conftest import TINY

    monkeypatch.setitem(models.MODELS, "vgg-no-bn", _without_batch_norm)
    model = _without_batch_norm()
    path = str(tmp_path / "no-bn.pt")
    atomic_save({"format": FORMAT, "version": VERSION, "model_name": "vgg-no-bn", "arch": dict(model.arch),
                 "model": model.state_dict(), "ema": model.state_dict(), "step": 0}, path)
    out = tmp_path / "refused"
    assert compress(["--checkpoint", path, "--out", str(out), "--method", "slim", "--no-eval"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the network has no batch norm" in err[0] and not out.exists()
    assert train(TINY + ["--model", "vgg-no-bn", "--data-dir", fake_cifar, "--out", str(out), "--steps", "1",
                         "--slim-lambda", "1e-4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--slim-lambda: the model has no batch norm" in err[0] and not out.exists()


def test_a_checkpoint_of_one_network_given_to_anothers_surgery_is_refused(tmp_path, capsys):
    from semisup.checkpoint import atomic_save, load_checkpoint
    from semisup.commands.compress import main as compress

    path, _ = _checkpoint(tmp_path, "densenet-40")
    state = load_checkpoint(path)
    state["model_name"] = "preresnet-164"  # a DenseNet's weights and arch, named as another network
    atomic_save(state, path)
    out = tmp_path / "refused"
    assert compress(["--checkpoint", path, "--out", str(out), "--method", "slim", "--no-eval"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot rebuild model 'preresnet-164'" in err[0] and not out.exists()


# ----- each network end to end: train (accumulation, sparsity), slim, ONNX, evaluate.py, fine-tune --------------
@pytest.mark.parametrize("name", NETWORKS)
def test_each_network_trains_slims_exports_and_evaluates(tmp_path, fake_cifar, name):
    import json

    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from semisup.checkpoint import load_checkpoint
    from semisup.commands.compress import main as compress
    from semisup.commands.evaluate import main as evaluate
    from semisup.runner import main as train

    from conftest import TINY

    small_init, _ = _checkpoint(tmp_path, name)  # a small instance of the network (its arch travels in --init)
    base = TINY + ["--model", name, "--data-dir", fake_cifar, "--algorithm", "supervised", "--eval-every", "2"]
    assert train(base + ["--out", str(tmp_path / "sparse"), "--steps", "2", "--accum-steps", "2",
                         "--slim-lambda", "1e-4", "--init", small_init]) == 0
    out = tmp_path / "slim"
    assert compress(["--checkpoint", str(tmp_path / "sparse" / "last.pt"), "--out", str(out), "--method", "slim",
                     "--ratio", "0.4", "--onnx", "--latency-repeats", "1", "--threads", "1"]) == 0
    state = load_checkpoint(str(out / "pruned.pt"))
    small = model_from_arch(name, state["arch"]).eval()
    small.load_state_dict(state["ema"])
    x = torch.randn(2, 3, 32, 32)
    graph = onnx.load(str(out / "pruned.onnx"))
    onnx.checker.check_model(graph)
    with torch.no_grad():
        expected = small(x)
    got = torch.from_numpy(ReferenceEvaluator(graph).run(None, {"images": x.numpy()})[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert evaluate(["--checkpoint", str(out / "pruned.pt"), "--data-dir", fake_cifar, "--threads", "1",
                     "--amp", "none", "--out", str(tmp_path / "eval")]) == 0
    with open(tmp_path / "eval" / "metrics.json") as f, open(out / "report.json") as g:
        assert json.load(f)["top1"] == pytest.approx(json.load(g)["test_acc"]["after"], abs=1e-6)
    assert train(base + ["--out", str(tmp_path / "ft"), "--steps", "1", "--init", str(out / "pruned.pt")]) == 0
    assert load_checkpoint(str(tmp_path / "ft" / "last.pt"))["arch"] == state["arch"]
