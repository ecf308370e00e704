#!/usr/bin/env python
"""Train MixMatch on CIFAR-10 (250 labels, WRN-28-2, the paper's hyperparameters by default).

    python train.py                       # into runs/cifar10@250/
    python train.py --help                # every flag
"""
import sys

from semisup.runner import main

if __name__ == "__main__":
    sys.exit(main())
