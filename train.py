#!/usr/bin/env python
"""Train MixMatch on CIFAR-10 (250 labels, WRN-28-2, the paper's hyperparameters by default).

    python train.py                       # into runs/cifar10@250/
    python train.py --help                # every flag
"""

from semisup import stop
from semisup.config import TRAIN_DESCRIPTION, parse_args


def main() -> int:
    stop.install()  # first: a scheduler's stop signal checkpoints the run instead of killing it
    cfg = parse_args(prog="train.py", description=TRAIN_DESCRIPTION)  # a bad flag fails here, before torch loads
    from semisup.runner import run
    return run(cfg)


if __name__ == "__main__":
    code = main()
    from semisup.distributed import exit_process  # under torchrun: no interpreter teardown racing gloo's threads
    exit_process(code)
