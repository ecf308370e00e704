"""``python -m semisup.compress lottery --out DIR --rounds R [options] -- <train.py flags>``: lottery tickets with
rewinding and their two controls (``semisup.experiments.lottery`` runs them)."""
import argparse
import os
import sys
from typing import List

from .. import stop
from ..compress import lottery as lt
from ..config import ConfigError, OneLineParser, first_line, parse_args
from ..experiments import lottery_report as report
from ..experiments.lottery import Lottery, LotteryOptions, check
from ..guard import NonFiniteLoss
from ..runner import compile_errors

PROG = "python -m semisup.compress lottery"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, usage=f"{PROG} --out DIR --rounds R [options] -- <train.py flags>",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                      description="Lottery tickets with rewinding (iterative magnitude pruning) and their two "
                                  "controls, each run a resumable train.py run of the flags after '--'; results in "
                                  "DIR/lottery.json, .txt and .png.",
                      epilog="python train.py --help lists the train.py flags; docs/compression.md, Lottery "
                             "tickets, the folders and the results.")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS,
                   help="folder of the lottery: round0, round<r>, reinit<r>, random<r>")
    p.add_argument("--rounds", type=int, required=True, default=argparse.SUPPRESS,
                   help="pruning rounds after the dense round 0")
    p.add_argument("--prune-fraction", type=float, default=0.2,
                   help="fraction of the surviving conv/linear weights pruned per round (open_lth's 0.2)")
    p.add_argument("--rewind-step", type=int, default=0,
                   help="step whose state the survivors and the optimizer go back to (0: the initialisation, the "
                        "original lottery ticket)")
    p.add_argument("--scope", choices=lt.SCOPES, default="global",
                   help="rank the survivors of all layers together, or prune the fraction from each layer")
    p.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True,
                   help="also train the reinit and random controls of every round")
    return p


def split_argv(argv: List[str]):
    """(the lottery's own flags, the train.py flags after the first '--')."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse(argv: List[str]):
    """(options, the validated train.py Config); a bad flag of either exits with 2 and one line."""
    own, train_argv = split_argv(argv)
    args = build_parser().parse_args(own)
    return args, parse_args(train_argv, prog=PROG)


def main(argv=None) -> int:
    """Run (or resume) a lottery; bad input exits with 2 and one line before anything is written, a non-finite
    loss with 1, a stop signal checkpoints the current run and exits with stop.REQUEUE_EXIT."""
    stop.install()
    args, cfg = parse(list(sys.argv[1:] if argv is None else argv))
    args = LotteryOptions(**vars(args))
    try:
        check(args, cfg)
        record = Lottery(args, cfg).run()
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLoss as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except stop.StopForRequeue as err:
        print(err, file=sys.stderr)
        return stop.REQUEUE_EXIT
    except compile_errors(cfg) as err:
        print(f"{PROG}: error: torch.compile failed ({first_line(err)}); run with --no-compile", file=sys.stderr)
        return 1
    print(report.format_table(record), end="")
    print(f"wrote {os.path.join(args.out, report.JSON)}, {report.TXT} and {report.PNG}")
    return 0
