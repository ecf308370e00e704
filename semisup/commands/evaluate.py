"""``evaluate.py``: the flags of a checkpoint's evaluation (``semisup.evaluate.evaluation`` does the work)."""
import argparse
import sys

from ..checkpoint import CheckpointError
from ..config import AMP_MODES, DEVICES, ConfigError, OneLineParser
from ..evaluate.evaluation import SPLITS, run

PROG = "evaluate.py"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, allow_abbrev=False,
                      description="Evaluate a semisup checkpoint: top-1/top-5, per-class precision/recall/F1, "
                                  "confusion matrix, calibration; optionally against a second checkpoint.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train.py (or a pruned model)")
    p.add_argument("--compare", default="", metavar="CHECKPOINT",
                   help="a second checkpoint B, evaluated the same way on the same images; reports B - A")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema", help="EMA or raw weights (default: ema)")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="the test set, or the run's own validation or labeled images (default: test)")
    p.add_argument("--data-dir", default="",
                   help="folder holding the run's dataset (default: the checkpoint's --data-dir; a folder:PATH "
                        "dataset is read from its PATH)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per forward pass (default 0: the device's, 128 on the CPU, 1024 on CUDA)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (CUDA when present), cpu or cuda "
                   "(default: auto)")
    p.add_argument("--amp", choices=AMP_MODES, default="auto",
                   help="autocast precision, as in train.py (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0, PyTorch's choice)")
    p.add_argument("--out", default="", help="output folder (default: eval-<weights>-<split>/ beside the "
                   "checkpoint, with -bn<N> appended under --recalibrate-bn N)")
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                   help="first re-estimate the batch-norm statistics on N training images, without "
                        "augmentation (default: 0, off)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, low in (("batch_size", 0), ("recalibrate_bn", 0), ("threads", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low} (got {getattr(args, name)})")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (ConfigError, CheckpointError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0
