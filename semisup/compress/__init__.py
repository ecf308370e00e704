"""Compression of a trained network: unstructured pruning (masks) and network slimming (real channel removal).

``python -m semisup.compress`` prunes a checkpoint and writes a report; the training-time parts (slimming penalty,
pruning schedules) are ``train.py`` flags hooked in by ``training.install``.
"""
