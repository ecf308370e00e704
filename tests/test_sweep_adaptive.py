"""FlexMatch's Table 1 (with FreeMatch and SoftMatch) as a sweep, its rendering beside the papers' numbers, and the
CPU-scale comparison of the adaptive thresholds."""
import os

from test_sweep_fixmatch import commands

from semisup.experiments import adaptive_numbers as am
from semisup.experiments.numbers import paper_confirmed, paper_error

LABELS = {"cifar10": (40, 250, 4000), "cifar100": (400, 2500, 10000), "stl10": (40, 250, 1000),
          "svhn-extra": (40, 1000)}
MODEL = {"cifar10": "wrn-28-2", "cifar100": "wrn-28-8", "stl10": "wrn-28-2", "svhn-extra": "wrn-28-2"}


def _row(cfg):
    return os.path.basename(os.path.dirname(cfg.out)).split("@")[0]


def test_table_1_commands_three_seeds_each_methods_recipe(capsys, tmp_path):
    cfgs = commands(capsys, ["flexmatch", "--out", str(tmp_path), "--print-commands"])
    seen = {}
    for c in cfgs:
        method = _row(c).split("-", 1)[1]
        seen.setdefault((c.dataset, c.algorithm), set()).add((c.n_labeled, c.seed))
        assert c.algorithm == method and c.model == MODEL[c.dataset]
        assert (c.optimizer, c.lr, c.nesterov, c.lr_schedule, c.wd_mode, c.uratio) == (
            "sgd", 0.03, True, "cosine-7/16", "l2-kernels", 7)
        assert c.wd == (1e-3 if c.dataset == "cifar100" else 5e-4)
        assert (c.n_valid, c.amp, c.steps) == (0, "none", 1 << 20)
    assert {a for _, a in seen} == {"fixmatch", "flexmatch", "freematch", "softmatch"}
    for (dataset, algorithm), cells in seen.items():
        extra = (10,) if (dataset, algorithm) == ("cifar10", "freematch") else ()
        assert cells == {(n, s) for n in LABELS[dataset] + extra for s in (1, 2, 3)}
    assert len(cfgs) == 3 * (4 * 11 + 1)


def test_the_sweep_prints_its_cost(capsys, tmp_path):
    from semisup.commands.sweep import main

    assert main(["flexmatch", "--out", str(tmp_path), "--estimate", "1.0"]) == 0
    assert capsys.readouterr().out.startswith(f"135 runs, {135 << 20:,} steps: ")


def test_papers_numbers_with_their_confirmation():
    assert paper_error("flexmatch", "cifar10-flexmatch", 40) == (4.97, 0.06)
    assert paper_error("flexmatch", "cifar100-freematch", 400) == (37.98, 0.42)
    assert paper_confirmed("flexmatch", "cifar100-freematch", 400)
    assert not paper_confirmed("flexmatch", "cifar10-softmatch", 250)
    assert paper_error("flexmatch", "cifar10-freematch", 10) == (7.07, 4.28)
    assert paper_error("flexmatch", "stl10-softmatch", 250) is None  # not in the paper
    assert set(am.CELLS) == {(d, m) for d in am.DATASETS for m in am.METHODS}


def test_a_table_1_folder_renders_beside_the_papers_with_its_picture(tmp_path):
    from test_tables import write_run

    from semisup.commands.tables import main as tables

    for seed, acc in ((1, 95.0), (2, 94.0)):
        write_run(str(tmp_path), "flexmatch", "cifar10-flexmatch", 40, seed, accs=[90.0, acc])
        write_run(str(tmp_path), "flexmatch", "cifar10-softmatch", 250, seed, accs=[90.0, acc])
    assert tables([str(tmp_path)]) == 0
    with open(tmp_path / "table.md") as f:
        text = f.read()
    # each seed's error: 100 − the median of its two evaluations (92.5, 92)
    assert "| cifar10-flexmatch | 40 | 7.75 ± 0.35 | 4.97 ± 0.06 | +2.78 | 2 |" in text
    assert "| cifar10-softmatch | 250 | 7.75 ± 0.35 | 4.82 ± 0.09 (unverified) | +2.93 | 2 |" in text
    assert os.path.getsize(tmp_path / "flexmatch.png") > 10_000


def test_the_cpu_scale_comparison_gives_supervised_the_same_sgd_recipe(capsys, tmp_path):
    cfgs = commands(capsys, ["compare-adaptive", "--out", str(tmp_path), "--print-commands"])
    by_row = {}
    for c in cfgs:
        by_row.setdefault(_row(c), []).append((c.n_labeled, c.seed))
    assert set(by_row) == {"supervised-sgd", "fixmatch", "flexmatch", "freematch", "softmatch", "adamatch", "dash"}
    assert all(sorted(cells) == [(40, 1), (250, 1), (250, 2), (250, 3)] for cells in by_row.values())
    recipes = {(c.optimizer, c.lr, c.nesterov, c.lr_schedule, c.wd, c.wd_mode) for c in cfgs}
    assert recipes == {("sgd", 0.03, True, "cosine-7/16", 5e-4, "l2-kernels")}
    assert {(c.batch_size, c.steps, c.eval_every, c.model) for c in cfgs} == {(8, 600, 150, "wrn-16-1")}
    dash = next(c for c in cfgs if c.algorithm == "dash")
    assert dash.dash_warmup < dash.steps


def test_equal_steps_and_equal_wall_time_by_hand():
    from semisup.experiments.equal_time import at_time, equal_time_lines
    from semisup.experiments.tables import Cell, RunResult

    def run(row, points):
        history = [{"step": s, "elapsed_s": t, "test_acc_ema": a, **({"pass_rate": p} if p is not None else {})}
                   for s, t, a, p in points]
        return Cell("compare-adaptive", row, 250, [RunResult("compare-adaptive", row, 250, 1, 0.0, 2, 2,
                                                             history=history)])

    fast = run("fixmatch", [(100, 50.0, 30.0, 0.1), (200, 100.0, 40.0, 0.3)])
    slow = run("flexmatch", [(100, 80.0, 35.0, 1.0), (200, 160.0, 45.0, 0.9)])
    supervised = run("supervised-sgd", [(100, 5.0, 33.0, None), (200, 10.0, 36.0, None)])
    assert at_time(slow.runs[0].history, 100.0) == 35.0 and at_time(slow.runs[0].history, 79.0) is None
    lines = equal_time_lines([supervised, fast, slow])
    assert "(T = 100 s)" in lines[1]  # the shortest run that logs a pass rate
    assert "| fixmatch | 250 | 1 | 200 | 40.00 | 40.00 | 0.500 | 0.100 → 0.300 |" in lines
    assert "| flexmatch | 250 | 1 | 200 | 45.00 | 35.00 | 0.800 | 1.000 → 0.900 |" in lines
    assert "| supervised-sgd | 250 | 1 | 200 | 36.00 | 36.00 | 0.050 | — → — |" in lines


def test_a_comparison_with_pass_rates_renders_its_curves_and_equal_time_table(tmp_path):
    import json

    from semisup.commands.tables import main as tables

    for row, passes in (("fixmatch", [0.0, 0.1]), ("flexmatch", [1.0, 0.9]), ("supervised-sgd", None)):
        folder = tmp_path / "compare-adaptive" / f"{row}@250" / "seed1"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"n_eval_last": 3}))
        with open(folder / "metrics.jsonl", "w") as f:
            for i, acc in enumerate((20.0, 30.0)):
                rate = {"pass_rate": passes[i], "threshold": 0.5, "class_threshold": [0.1, 0.3]} if passes else {}
                f.write(json.dumps({"step": 10 * (i + 1), "test_acc_ema": acc, "test_acc": acc,
                                    "elapsed_s": 5.0 * (i + 1), **rate}) + "\n")
    assert tables([str(tmp_path)]) == 0
    assert os.path.getsize(tmp_path / "compare-adaptive_curves.png") > 10_000
    text = (tmp_path / "equal_time.md").read_text()
    assert "| flexmatch | 250 | 1 | 20 | 30.00 | 30.00 | 0.500 | 1.000 → 0.900 |" in text
