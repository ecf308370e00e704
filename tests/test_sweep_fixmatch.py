"""The FixMatch paper's Table 2 as a sweep: every command against the recipe written out by hand, the paper's
numbers (unverified ones marked), the cost printed before launching, and --n-labeled 0 (every label)."""
import os
import shlex

import numpy as np
import pytest

from semisup.commands.sweep import main
from semisup.config import Config, ConfigError, parse_args, validate
from semisup.data import every_label
from semisup.experiments import fixmatch_numbers as fm
from semisup.experiments.numbers import paper_confirmed, paper_error
from semisup.experiments.sweep import cost_line, relative_step_cost
from semisup.experiments.tables import Cell, RunResult, to_markdown

LABELS = {"cifar10": (40, 250, 4000), "cifar100": (400, 2500, 10000), "svhn": (40, 250, 1000), "stl10": (1000,)}
MODEL = {"cifar10": "wrn-28-2", "cifar100": "wrn-28-8", "svhn": "wrn-28-2", "stl10": "wrn-28-2"}
# every row's optimizer, lr, Nesterov, schedule, weight decay form (FixMatch's recipe)
RECIPE = ("sgd", 0.03, True, "cosine-7/16", "l2-kernels")
ALGORITHM = {"pi-model": "pi-model", "pseudo-label": "pseudo-label", "mean-teacher": "mean-teacher",
             "mixmatch": "mixmatch", "uda": "uda", "remixmatch": "remixmatch", "fixmatch-ra": "fixmatch",
             "fixmatch-cta": "fixmatch"}


def commands(capsys, argv):
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return [parse_args(shlex.split(line)[2:]) for line in lines]


def test_print_commands_are_table_2_with_fixmatchs_recipe(capsys, tmp_path):
    cfgs = commands(capsys, ["fixmatch", "--out", str(tmp_path), "--print-commands"])
    seen = {}
    for c in cfgs:
        row = os.path.basename(os.path.dirname(c.out)).split("@")[0]
        dataset, method = row.split("-", 1)
        seen.setdefault((dataset, method), set()).add(c.n_labeled)
        assert (c.dataset, c.model, c.algorithm) == (dataset, MODEL[dataset], ALGORITHM[method])
        assert (c.optimizer, c.lr, c.nesterov, c.lr_schedule, c.wd_mode) == RECIPE
        assert c.wd == (1e-3 if dataset == "cifar100" else 5e-4)
        assert (c.batch_size, c.ema_decay, c.steps, c.n_valid, c.amp) == (64, 0.999, 1 << 20, 0, "none")
        if c.algorithm in ("fixmatch", "uda"):
            assert (c.uratio, c.confidence, c.lambda_u) == (7, 0.95, 1.0)
            assert c.strong_aug == ("cta" if method == "fixmatch-cta" else "ra")
    assert set(seen) == {(d, m) for d in LABELS for m in ALGORITHM}
    for (dataset, method), labels in seen.items():
        fewest = {min(LABELS[dataset])} if dataset != "stl10" else set()  # 4 labels a class
        reported = set(LABELS[dataset]) - (fewest if method in ("pi-model", "pseudo-label", "mean-teacher") else set())
        assert labels == reported  # the paper's "–" cells are not run
    assert len(cfgs) == 5 * sum(len(v) for v in seen.values())


def test_paper_numbers_with_their_confirmation():
    assert paper_error("fixmatch", "cifar10-fixmatch-cta", 40) == (11.39, 3.35)
    assert paper_error("fixmatch", "cifar10-fixmatch-ra", 250) == (5.07, 0.65)
    assert paper_error("fixmatch", "cifar100-remixmatch", 400) == (44.28, 2.06)
    assert paper_error("fixmatch", "stl10-fixmatch-cta", 1000) == (5.17, 0.63)
    assert paper_error("fixmatch", "cifar10-pi-model", 40) is None
    assert paper_confirmed("fixmatch", "cifar10-uda", 250) and not paper_confirmed("fixmatch", "svhn-uda", 250)
    assert fm.split_row("cifar100-fixmatch-ra") == ("cifar100", "fixmatch-ra") and fm.split_row("cifar10-x") is None
    runs = [RunResult("fixmatch", "svhn-mixmatch", 250, s, e, 1 << 20, 20) for s, e in ((1, 4.0), (2, 4.4))]
    text = to_markdown([Cell("fixmatch", "svhn-mixmatch", 250, runs)])
    assert "| svhn-mixmatch | 250 | 4.20 ± 0.28 | 3.98 ± 0.23 (unverified) | +0.22 | 2 |" in text


def test_the_cost_counts_each_algorithms_passes():
    """FixMatch at μ = 7: (1 + 2·7) images forward and backward per labeled one = 45, against MixMatch's 11;
    CTAugment adds the probe's forward pass."""
    mm = validate(Config(n_valid=0, eval_every=1 << 30))
    ra = validate(Config(algorithm="fixmatch", n_valid=0, eval_every=1 << 30))
    cta = validate(Config(algorithm="fixmatch", strong_aug="cta", n_valid=0, eval_every=1 << 30))
    assert relative_step_cost(mm) == pytest.approx(1.0, rel=1e-6)
    assert relative_step_cost(ra) == pytest.approx(45 / 11, rel=1e-6)
    assert relative_step_cost(cta) == pytest.approx(46 / 11, rel=1e-6)
    assert cost_line("t", [mm, ra]) == (f"t: 2 runs, {2 << 20:,} steps, as much work as "
                                        f"{(1 + 45 / 11) * (1 << 20):,.0f} K=2 MixMatch steps "
                                        f"(sweep.py --estimate SEC_PER_STEP turns it into device-hours)")


def test_every_label_labels_all_but_the_validation_images_without_balance():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 10)  # unbalanced, as SVHN's
    split = every_label(labels, 3, seed=1, num_classes=3)
    assert len(split.valid) == 3 and sorted(labels[split.valid]) == [0, 1, 2]
    assert sorted(np.concatenate([split.labeled, split.valid])) == list(range(20)) and len(split.unlabeled) == 0


def test_table6_runs_its_fully_supervised_row_on_every_label(capsys, tmp_path):
    cfgs = commands(capsys, ["table6", "--out", str(tmp_path), "--rows", "fully-supervised", "--print-commands"])
    assert [(c.algorithm, c.n_labeled, c.dataset) for c in cfgs] == [("fs-mixup", 0, "svhn")] * 5
    assert paper_error("table6", "fully-supervised", 0) == (2.59, None)
    assert paper_error("table7", "fully-supervised", 0) == (1.71, None)


def test_an_ssl_algorithm_refuses_a_split_without_unlabeled_images(fake_cifar):
    from semisup.algorithms.base import check_data, make_algorithm
    from semisup.data import prepare_data

    data = prepare_data(fake_cifar, 0, 100, 1)
    assert len(data.unlabeled) == 0 and len(data.labeled) == 500
    with pytest.raises(ConfigError, match="this split leaves none"):
        check_data(data, make_algorithm(validate(Config(algorithm="pi-model")), 10))
    check_data(data, make_algorithm(validate(Config(algorithm="fixmatch")), 10))  # its unlabeled set: the labeled


def test_the_cpu_scale_comparison_changes_every_row_alike(capsys, tmp_path):
    """compare-2020: batch 32 and 300 steps for every row, each algorithm's own recipe, and the ramps counted in
    images over 4x the run: MixMatch's 1,200 steps, ReMixMatch's 1,200 x 32 / 1024 = 37.5 kimg."""
    cfgs = commands(capsys, ["compare-2020", "--out", str(tmp_path), "--seeds", "1", "--print-commands"])
    by_row = {os.path.basename(os.path.dirname(c.out)).split("@")[0]: c for c in cfgs}
    assert set(by_row) == {"mixmatch", "supervised", "fixmatch-ra", "fixmatch-cta", "uda", "remixmatch"}
    assert all((c.batch_size, c.steps, c.model, c.n_labeled) == (32, 300, "wrn-16-1", 250) for c in cfgs)
    assert by_row["mixmatch"].rampup_steps == 1200 and by_row["remixmatch"].warmup_kimg == 37.5
    assert by_row["mixmatch"].rampup_images == by_row["remixmatch"].warmup_kimg * 1024
    for row in ("fixmatch-ra", "fixmatch-cta", "uda", "remixmatch"):
        assert (by_row[row].optimizer, by_row[row].lr_schedule) == ("sgd", "cosine-7/16")
    assert (by_row["mixmatch"].optimizer, by_row["supervised"].optimizer) == ("adam", "adam")


def test_a_table_2_folder_renders_beside_the_paper_with_its_picture(tmp_path):
    from test_tables import write_run

    from semisup.commands.tables import main as tables

    for seed, acc in ((1, 95.0), (2, 94.0)):
        write_run(str(tmp_path), "fixmatch", "cifar10-fixmatch-cta", 250, seed, accs=[90.0, acc])
        write_run(str(tmp_path), "fixmatch", "svhn-uda", 40, seed, accs=[50.0, 60.0 + seed])
    assert tables([str(tmp_path)]) == 0
    with open(tmp_path / "table.md") as f:
        text = f.read()
    # each seed's error: 100 − the median of its two evaluations (92.5, 92; 55.5, 56)
    assert "| cifar10-fixmatch-cta | 250 | 7.75 ± 0.35 | 5.07 ± 0.33 | +2.68 | 2 |" in text
    assert "| svhn-uda | 40 | 44.25 ± 0.35 | 52.63 ± 20.51 (unverified) | -8.38 | 2 |" in text
    assert os.path.getsize(tmp_path / "fixmatch.png") > 10_000
