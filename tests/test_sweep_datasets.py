"""The paper's tables on the other datasets: the commands ``sweep.py <table> --print-commands`` prints, checked
against the official settings (DESIGN.md, from google-research/mixmatch runs/*.sh), and the numbers beside them."""
import os
import shlex

import pytest

from semisup.commands.sweep import main
from semisup.config import parse_args
from semisup.experiments.numbers import paper_error
from semisup.experiments.sweep import OWNED_FLAGS, TABLES
from semisup.experiments.tables import Cell, RunResult, to_markdown

# table -> {(row, dataset, labels): seeds}, and the hyperparameters every run of the table has:
# (model, wd, lambda_u (w_match), alpha (beta)) per row.
OFFICIAL = {
    "large": ({("cifar10", "cifar10", 4000): (1, 2, 3, 4, 5), ("cifar100", "cifar100", 10000): (1, 2, 3, 4, 5)},
              {"cifar10": ("wrn-28-large", 0.04, 75.0, 0.75), "cifar100": ("wrn-28-large", 0.04, 150.0, 0.75)}),
    "stl10": ({("mixmatch", "stl10", 1000): (1, 2, 3, 4, 5), ("mixmatch", "stl10", 5000): (1,)},
              {"mixmatch": ("wrn-28-2", 0.02, 50.0, 0.75)}),
    "svhn": ({("mixmatch", "svhn", n): (1, 2, 3, 4, 5) for n in (250, 500, 1000, 2000, 4000)},
             {"mixmatch": ("wrn-28-2", 0.02, 250.0, 0.75)}),
    "svhn-extra": ({("mixmatch", "svhn-extra", n): (1, 2, 3, 4, 5) for n in (250, 500, 1000, 2000, 4000)},
                   {"mixmatch": ("wrn-28-2", 0.02, 250.0, 0.25)}),
}
PAPER = {("svhn", 250): (3.78, 0.26), ("svhn", 500): (3.64, 0.46), ("svhn", 1000): (3.27, 0.31),
         ("svhn", 2000): (3.04, 0.13), ("svhn", 4000): (2.89, 0.06), ("svhn-extra", 250): (2.22, 0.08),
         ("svhn-extra", 500): (2.17, 0.07), ("svhn-extra", 1000): (2.18, 0.06), ("svhn-extra", 2000): (2.12, 0.03),
         ("svhn-extra", 4000): (2.07, 0.05), ("stl10", 1000): (10.18, 1.46), ("stl10", 5000): (5.59, None)}


def commands(capsys, argv):
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(line.startswith("python train.py ") for line in lines)
    return [parse_args(shlex.split(line)[2:]) for line in lines]


@pytest.mark.parametrize("table", list(OFFICIAL))
def test_print_commands_are_the_official_settings(capsys, tmp_path, table):
    cells, hyper = OFFICIAL[table]
    cfgs = commands(capsys, [table, "--out", str(tmp_path), "--print-commands"])
    got = {}
    for c in cfgs:
        row = os.path.basename(os.path.dirname(c.out)).split("@")[0]
        got.setdefault((row, c.dataset, c.n_labeled), []).append(c.seed)
        assert c.out == os.path.join(str(tmp_path), table, f"{row}@{c.n_labeled}", f"seed{c.seed}")
        assert (c.model, c.wd, c.lambda_u, c.alpha) == hyper[row]
        assert (c.lr, c.batch_size, c.K, c.T, c.ema_decay, c.steps) == (0.002, 64, 2, 0.5, 0.999, 1 << 20)
        assert (c.rampup_kimg, c.rampup_steps) == (1024, 0)
        assert (c.n_valid, c.amp) == (0, "none")  # the protocol: dataset.seed@N-1, fp32
    assert {k: tuple(sorted(v)) for k, v in got.items()} == cells


def test_stl10_at_5000_labels_holds_no_validation_images(capsys, tmp_path):
    cfgs = commands(capsys, ["stl10", "--out", str(tmp_path), "--labels", "5000", "--print-commands"])
    assert [(c.n_labeled, c.n_valid, c.seed) for c in cfgs] == [(5000, 0, s) for s in (1, 2, 3, 4, 5)]


def test_dataset_is_owned_by_the_sweep(capsys, tmp_path):
    assert "--dataset" in OWNED_FLAGS
    assert main(["svhn", "--out", str(tmp_path), "--dataset", "cifar10", "--print-commands"]) == 2
    assert "--dataset is set by the sweep" in capsys.readouterr().err


def test_paper_numbers_and_rendering():
    for (table, labels), number in PAPER.items():
        assert paper_error(table, "mixmatch", labels) == number
    assert paper_error("large", "cifar10", 4000) == (4.95, 0.08)
    assert paper_error("large", "cifar100", 10000) == (25.88, 0.30)
    assert paper_error("large", "cifar100", 4000) is None and paper_error("svhn", "mixmatch", 40) is None
    runs = [RunResult("svhn-extra", "mixmatch", 250, s, e, 1 << 20, 20) for s, e in ((1, 2.0), (2, 2.4))]
    text = to_markdown([Cell("svhn-extra", "mixmatch", 250, runs)])
    assert "| mixmatch | 250 | 2.20 ± 0.28 | 2.22 ± 0.08 | -0.02 | 2 |" in text
    assert list(TABLES)[-4:] == ["large", "stl10", "svhn", "svhn-extra"]
