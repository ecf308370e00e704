#!/usr/bin/env python
"""Evaluate a checkpoint: top-1/top-5, per-class precision/recall/F1, confusion matrix, calibration, plots.

    python evaluate.py --checkpoint runs/cifar10@250/last.pt          # EMA weights, test set
    python evaluate.py --checkpoint A.pt --compare B.pt               # what changed from A to B
    python evaluate.py --help                                         # every flag
"""
import sys

from semisup.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
