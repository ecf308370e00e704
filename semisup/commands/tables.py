"""``scripts/tables.py DIR``: render a sweep folder beside the paper's numbers (``semisup.experiments.tables``)."""
import argparse
import sys

from ..experiments import tables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tables.py", description=tables.__doc__.split("\n\n")[0] + " Writes "
                                     "DIR/table.md, DIR/table.csv and, for the labels table, DIR/labels.png; for "
                                     "table5-7, the paper's Figures 2 and 3 beside the measured errors "
                                     "(DIR/table5.png, ...).")
    parser.add_argument("dir", help="a sweep folder (sweep.py --out), or one table's folder inside it")
    parser.add_argument("--metric", choices=list(tables.METRICS), default="test_acc_ema",
                        help="test_acc_ema: the paper's statistic (default); test_acc: the raw model, for runs "
                             "too short for the EMA (decay 0.999: after n steps it still holds 0.999**n of the "
                             "initial weights)")
    args = parser.parse_args(argv)
    try:
        text, files = tables.render(args.dir, args.metric)
    except FileNotFoundError as err:
        print(f"tables.py: error: {err}", file=sys.stderr)
        return 2
    print(text)
    print("wrote " + ", ".join(files))
    return 0
