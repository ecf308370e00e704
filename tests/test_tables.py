"""scripts/tables.py on synthetic run folders: the median of the last evaluations, mean and sample std over seeds,
the paper's numbers and the differences, all compared with values worked out by hand."""
import csv
import json
import math
import os

import pytest

from semisup.commands.tables import main
from semisup.experiments.tables import aggregate, cell_record, find_runs, mean_std, median_error, read_metrics


def write_run(root, table, row, labels, seed, accs=None, summary=None, n_eval_last=20, every=10):
    folder = os.path.join(root, table, f"{row}@{labels}", f"seed{seed}")
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"n_eval_last": n_eval_last}, f)
    if accs is not None:
        with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
            for i, acc in enumerate(accs, 1):
                f.write(json.dumps({"step": i * every, "test_acc_ema": acc, "test_acc": 0.0}) + "\n")
    if summary is not None:
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump(summary, f)
    return folder


def test_median_error_by_hand():
    history = [{"test_acc_ema": a} for a in range(1, 26)]  # 1 … 25
    assert median_error(history, 20) == (100 - 15.5, 20)  # last 20 = 6 … 25, median (15 + 16) / 2
    assert median_error(history, 3) == (100 - 24, 3)  # 23, 24, 25
    assert median_error(history[:5], 20) == (100 - 3, 5)  # fewer evaluations than asked: all of them
    assert math.isnan(median_error([], 20)[0])


def test_mean_and_sample_std_by_hand():
    mean, std = mean_std([84.5, 30.0, 40.0])
    # mean 154.5 / 3 = 51.5; squared deviations 33² + 21.5² + 11.5² = 1683.5; / (3 − 1) = 841.75
    assert mean == pytest.approx(51.5) and std == pytest.approx(math.sqrt(841.75))
    assert mean_std([7.0]) == (7.0, None)


def test_read_metrics_ignores_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "test_acc_ema": 50.0}\n{"step": 20, "test_acc_ema": 60.0}\n{"step": 30, "te')
    assert [h["step"] for h in read_metrics(str(path))] == [10, 20]


@pytest.fixture
def sweep(tmp_path):
    root = str(tmp_path / "sweep")
    write_run(root, "table4", "mixmatch", 250, 1, accs=list(range(1, 26)))  # error 84.5, step 250
    write_run(root, "table4", "mixmatch", 250, 2, accs=[50, 60, 70, 80, 90])  # error 30, step 50
    write_run(root, "table4", "mixmatch", 250, 3, summary={"error": 40.0, "step": 100, "n_evals_used": 20})
    write_run(root, "table4", "ict", 4000, 1, accs=[10, 20, 30], n_eval_last=2)  # median(20, 30): error 75
    write_run(root, "labels", "mixmatch", 250, 1, accs=[80.0])  # error 20
    write_run(root, "labels", "mixmatch", 250, 2, accs=[70.0])  # error 30
    write_run(root, "labels", "mixmatch", 4000, 1, accs=[90.0])  # error 10
    write_run(root, "supervised", "supervised", 250, 1, accs=[40.0])  # error 60, no paper number
    os.makedirs(os.path.join(root, "table4", "k1@250", "seed1"))  # started, nothing written yet: ignored
    return root


def test_cells_by_hand(sweep):
    recs = {(c.table, c.row, c.labels): cell_record(c) for c in aggregate(find_runs(sweep))}
    assert list(recs) == [("table4", "mixmatch", 250), ("table4", "ict", 4000), ("labels", "mixmatch", 250),
                          ("labels", "mixmatch", 4000), ("supervised", "supervised", 250)]  # the paper's order
    mm = recs["table4", "mixmatch", 250]
    assert mm["error_mean"] == pytest.approx(51.5) and mm["error_std"] == pytest.approx(math.sqrt(841.75))
    assert (mm["paper_error"], mm["paper_std"]) == (11.80, None) and mm["diff"] == pytest.approx(51.5 - 11.80)
    assert (mm["seeds"], mm["steps_min"], mm["steps_max"], mm["evals_min"]) == (3, 50, 250, 5)
    ict = recs["table4", "ict", 4000]
    assert ict["error_mean"] == pytest.approx(75.0) and ict["error_std"] is None
    assert ict["paper_error"] == 6.81 and ict["evals_min"] == 2  # its own n_eval_last
    lb = recs["labels", "mixmatch", 250]
    assert lb["error_mean"] == pytest.approx(25.0) and lb["error_std"] == pytest.approx(math.sqrt(50.0))
    assert (lb["paper_error"], lb["paper_std"]) == (11.08, 0.87)
    assert recs["labels", "mixmatch", 4000]["diff"] == pytest.approx(10.0 - 6.24)
    assert recs["supervised", "supervised", 250]["paper_error"] is None


def test_render_writes_md_csv_png_and_prints(sweep, capsys):
    assert main([sweep]) == 0
    printed = capsys.readouterr().out
    with open(os.path.join(sweep, "table.md")) as f:
        md = f.read()
    assert md in printed
    assert "| mixmatch | 250 | 51.50 ± 29.01 | 11.80 | +39.70 | 3 | 50–250 (0.0238%) | 5 |" in md
    assert "| mixmatch | 250 | 25.00 ± 7.07 | 11.08 ± 0.87 | +13.92 | 2 | 10 (0.000954%) | 1 |" in md
    assert "| supervised | 250 | 60.00 | — | — | 1 |" in md
    with open(os.path.join(sweep, "table.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and rows[0]["seed_errors"] == "seed1=84.50 seed2=30.00 seed3=40.00"
    assert float(rows[0]["error_std"]) == pytest.approx(29.0129, abs=1e-4) and rows[1]["error_std"] == ""
    assert os.path.getsize(os.path.join(sweep, "labels.png")) > 1000


def test_one_table_folder_and_empty_folder(sweep, tmp_path, capsys):
    assert main([os.path.join(sweep, "table4")]) == 0
    assert "## table4" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(sweep, "table4", "labels.png"))
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_raw_model_metric_for_short_runs(sweep, capsys):
    assert main([sweep, "--metric", "test_acc"]) == 0
    md = capsys.readouterr().out
    assert "median raw-model test accuracy (not the paper's statistic)" in md
    # The raw accuracies are all 0 here; seed 3 has only the EMA summary and drops out.
    assert "| mixmatch | 250 | 100.00 ± 0.00 | 11.80 | +88.20 | 2 | 50–250 (0.0238%) | 5 |" in md


def write_full_run(root, seed, records, amp="none", n_valid=0, summary=None):
    """A run folder as train.py writes it, with validation accuracies and measured time."""
    folder = write_run(root, "labels", "mixmatch", 250, seed, summary=summary)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"n_eval_last": 20, "amp": amp, "n_valid": n_valid, "warm_averages": seed == 1}, f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for step, (test, raw, valid, elapsed) in enumerate(records, 1):
            f.write(json.dumps({"step": step * 10, "test_acc_ema": test, "test_acc": raw, "valid_acc_ema": valid,
                                "elapsed_s": elapsed}) + "\n")
    return folder


def test_protocol_precision_model_selection_and_hours(tmp_path, capsys):
    root = str(tmp_path / "sweep")
    # seed 1: test 40, 60, 50; the validation set peaks at the second evaluation; 1.8 h
    write_full_run(root, 1, [(40, 30, 10, 3600), (60, 50, 30, 5400), (50, 45, 20, 6480)], n_valid=5000,
                   summary={"precision": "bf16"})
    write_full_run(root, 2, [(20, 10, 15, 360), (30, 20, 25, 720), (70, 60, 5, 1080)], n_valid=5000)  # 0.3 h
    rec = cell_record(aggregate(find_runs(root))[0])
    assert rec["error_mean"] == pytest.approx(100 - (50 + 30) / 2)  # medians 50 and 30
    assert rec["final_error_mean"] == pytest.approx(100 - (50 + 70) / 2)
    assert rec["best_valid_error_mean"] == pytest.approx(100 - (60 + 30) / 2)  # test at the best validation
    assert rec["best_test_error_optimistic_mean"] == pytest.approx(100 - (60 + 70) / 2)
    assert rec["precision"] == "bf16/fp32" and rec["n_valid"] == "5000"  # summary's precision, else config's amp
    assert rec["device_hours"] == pytest.approx(1.8 + 0.3)
    assert main([root]) == 0
    md = capsys.readouterr().out
    assert "5000 validation images held out" in md and "precision: bf16, fp32" in md
    assert "running averages: official, warm (" in md
    assert ("| 60.00 ± 14.14 | 11.08 ± 0.87 | +48.92 | 2 | 30 (0.00286%) | 3 | 40.00 | 55.00 | 35.00 | bf16/fp32 | "
            "2.1 |") in md
    curves = os.path.join(root, "labels_curves.png")
    assert os.path.getsize(curves) > 1000
    from matplotlib.image import imread
    assert imread(curves).shape[1] == 840  # 7 inches at 120 dpi


def test_official_protocol_is_named_in_the_header(tmp_path, capsys):
    root = str(tmp_path / "sweep")
    write_full_run(root, 1, [(40, 30, None, 10)], n_valid=0)
    assert main([root]) == 0
    md = capsys.readouterr().out
    assert "Protocol: the official protocol (`dataset.seed@N-1`: no held-out validation" in md
    assert "| — | 60.00 | fp32 |" in md  # no validation set: no selection on it


def test_curves_mean_and_spread_by_hand():
    from semisup.experiments.plots import mean_and_spread
    a = [{"step": 10, "test_acc": 10.0}, {"step": 20, "test_acc": 30.0}]
    b = [{"step": 10, "test_acc": 20.0}, {"step": 20, "test_acc": None}, {"step": 30, "test_acc": 5.0}]
    assert mean_and_spread([a, b], "test_acc") == ([10], [15.0], [10.0], [20.0])  # only steps both logged
    assert mean_and_spread([a], "test_acc") == ([10, 20], [10.0, 30.0], [10.0, 30.0], [10.0, 30.0])
