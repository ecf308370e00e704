"""The paper's comparison tables (Tables 5-7, Figures 2 and 3): the commands ``sweep.py table5/6/7
--print-commands`` prints, checked against runs/table5.sh-table7.sh of google-research/mixmatch as the notes state
them (../shared/notes/baselines-official.md, section 8), and a tiny sweep rendered beside the paper's numbers."""
import os
import shlex

import pytest

from semisup.commands.sweep import main
from semisup.config import parse_args
from semisup.experiments import numbers as paper
from semisup.experiments.tables import render

# runs/table5-7.sh, written out by hand: row → (weight decay, alpha, consistency weight); None where the method
# has no such option. Every other setting is the official files' flag default.
OFFICIAL = {
    "table5": ("cifar10", {"ict": (0.02, 0.75, 1000.0), "mean-teacher": (0.2, None, 50.0),
                           "mixmatch": (0.02, 0.75, 75.0), "mixup": (0.02, 0.75, None),
                           "pi-model": (0.02, None, 20.0), "pseudo-label": (0.02, None, 1.0),
                           "vat": (0.02, None, 0.3)}),
    "table6": ("svhn", {"ict": (0.02, 0.5, 20.0), "mean-teacher": (0.02, None, 150.0),
                        "mixmatch": (0.02, 0.75, 250.0), "mixup": (0.02, 0.25, None), "pi-model": (0.2, None, 5.0),
                        "pseudo-label": (0.02, None, 2.0), "vat": (0.02, None, 0.3)}),
    "table7": ("svhn-extra", {"ict": (0.02, 0.5, 20.0), "mean-teacher": (0.02, None, 180.0),
                              "mixmatch": (0.02, 0.25, 250.0), "mixup": (0.02, 0.25, None),
                              "pi-model": (0.2, None, 5.0), "pseudo-label": (0.02, None, 2.0),
                              "vat": (0.02, None, 0.3)}),
}


def printed(capsys, argv):
    assert main(argv) == 0
    return [parse_args(shlex.split(line)[2:]) for line in capsys.readouterr().out.strip().splitlines()]


@pytest.mark.parametrize("table", sorted(OFFICIAL))
def test_print_commands_match_the_official_scripts(capsys, tmp_path, table):
    dataset, rows = OFFICIAL[table]
    cfgs = printed(capsys, [table, "--out", str(tmp_path), "--print-commands"])
    cells = {}
    for c in cfgs:
        row = c.out.split(os.sep)[-2].split("@")[0]
        cells.setdefault((row, c.n_labeled), set()).add(c.seed)
        if row == "fully-supervised":  # fs_mixup on every label: wd 0.002, alpha 0.5 (fully_supervised/runs/all.sh)
            every = 49990 if table == "table5" else 0  # CIFAR-10's balanced split; SVHN's unbalanced classes: all
            assert (c.algorithm, c.wd, c.alpha, c.n_labeled, c.dataset) == ("fs-mixup", 0.002, 0.5, every, dataset)
            continue
        wd, alpha, weight = rows[row]
        assert (c.algorithm, c.dataset, c.wd, c.alpha, c.lambda_u) == (row, dataset, wd, alpha, weight)
        assert (c.n_valid, c.amp, c.steps, c.lr, c.batch_size, c.ema_decay) == (0, "none", 1 << 20, 0.002, 64, 0.999)
        if row == "mixmatch":
            assert c.rampup_images == 1024 * 1024  # MixMatch's own 1024 kimg
        else:
            assert c.rampup_images in (0, 0.4 * c.steps * 64)  # warmup_pos 0.4 of the run (MixUp: no ramp)
        assert c.smoothing in (None, 0.0)  # the scripts' --smoothing never reaches the SSL baselines' loss
    labels = (250, 500, 1000, 2000, 4000)
    expected = {(row, n): {1, 2, 3, 4, 5} for row in rows for n in labels}
    expected[("fully-supervised", 49990 if table == "table5" else 0)] = {1, 2, 3, 4, 5}
    assert cells == expected
    vat = next(c for c in cfgs if c.algorithm == "vat")
    assert (vat.vat_eps, vat.vat_xi, vat.lambda_ent, vat.vat_kl) == (6.0, 1e-6, 0.06, "reverse")
    pl = next(c for c in cfgs if c.algorithm == "pseudo-label")
    assert (pl.threshold, pl.pl_loss) == (0.95, "official")


def test_table4_ict_row_is_the_official_ict(capsys, tmp_path):
    cfgs = printed(capsys, ["table4", "--out", str(tmp_path), "--rows", "ict", "--print-commands"])
    assert {(c.algorithm, c.lambda_u, c.alpha, c.seed) for c in cfgs} == {("ict", 1000.0, 0.75, 3)}
    assert [c.n_labeled for c in cfgs] == [250, 4000]


def _fake_run(folder, errors):
    """A finished run whose EMA test accuracy is 100 - error at every evaluation."""
    import json

    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for step, error in errors:
            f.write(json.dumps({"step": step, "test_acc_ema": 100.0 - error, "test_acc": 100.0 - error}) + "\n")
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({"step": errors[-1][0]}, f)


def test_tiny_sweep_renders_beside_the_paper_with_figure_2(tmp_path):
    root = tmp_path / "sweep"
    for row, error in (("vat", 40.0), ("mixmatch", 20.0)):
        for seed, shift in ((1, -1.0), (2, 1.0)):
            _fake_run(str(root / "table5" / f"{row}@250" / f"seed{seed}"),
                      [(step, error + shift) for step in (100, 200, 300)])
    text, files = render(str(root))
    assert "| vat | 250 | 40.00 ± 1.41 | 36.03 ± 2.82 | +3.97 | 2 |" in text
    assert "| mixmatch | 250 | 20.00 ± 1.41 | 11.08 ± 0.87 | +8.92 | 2 |" in text
    figure = str(root / "table5.png")
    assert figure in files and os.path.getsize(figure) > 10_000
    assert paper.paper_error("table5", "ict", 250) is None  # the paper reports ICT in Table 4 only
    assert paper.paper_error("table5", "fully-supervised", 49990) == (4.13, None)
    assert paper.paper_error("table6", "mean-teacher", 250) == (6.45, 2.43)
    assert paper.paper_error("table7", "pi-model", 4000) == (5.70, 0.13)
