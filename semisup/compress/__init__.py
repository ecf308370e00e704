"""Compression of a trained network as a library: unstructured pruning (masks) and network slimming (real channel
removal), each a function of a model and a typed specification.

    from semisup.compress import PruneSpec, load_source, prune
    pruned = prune(load_source("runs/cifar10@250/last.pt").model, PruneSpec("slim", ratio=0.5))

``python -m semisup.compress`` (``semisup.commands.compress``) prunes a checkpoint from the command line; the
training-time parts (slimming penalty, pruning schedules) are ``train.py`` flags hooked in by ``training.install``.
"""
from .pruning import Pruned, PruneSpec, prune, read_ratio_file
from .source import Source, latency, load_source, source_data, test_accuracy

__all__ = ["PruneSpec", "Pruned", "Source", "latency", "load_source", "prune", "read_ratio_file", "source_data",
           "test_accuracy"]
