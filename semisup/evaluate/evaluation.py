"""``evaluate.py``'s body: a checkpoint in; accuracy, per-class scores, confusion matrix, calibration out.

The images are those the run itself used: the split is rebuilt from the checkpoint's configuration (``dataset``,
``image_size``, ``n_labeled``, ``n_valid``, ``seed``), so ``--split valid`` and ``--split labeled`` are the very
images held out or labeled in training. Every number is computed from the saved logits (predictions.npz), so
anyone can recompute them.
"""
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from ..config import LEGACY_DEFAULTS, Config, ConfigError
from ..data import SSLData, prepare_data
from ..predict import predict
from ..records import write_json
from ..runtime import Runtime, resolve_amp, resolve_device, resolve_memory_format
from .metrics import classification_report, compare_reports
from .plots import plot_confusion_difference, plot_confusion_matrix, plot_reliability
from .report import format_comparison, format_report, write_per_class_csv, write_predictions
from .restore import recalibrate_bn

SPLITS = ("test", "valid", "labeled")
SPLIT_KEYS = ("dataset", "image_size", "n_labeled", "n_valid", "seed")
# Batch-norm re-estimation averages per-batch statistics, so its batch size is fixed (not the device's evaluation
# default): the same checkpoint gets the same statistics on every device.
RECALIBRATION_BATCH = 1024


@dataclass
class Evaluation:
    info: dict
    report: dict
    logits: np.ndarray
    labels: np.ndarray


def split_settings(state: dict, split: str, source: str) -> dict:
    """dataset / image_size / n_labeled / n_valid / seed of the run; the paper's defaults (CIFAR-10) where a
    checkpoint carries no configuration, or one saved before the dataset was recorded."""
    cfg = state.get("config") if isinstance(state.get("config"), dict) else None
    if cfg is None and split != "test":
        raise ConfigError(f"{source} holds no training configuration, so its {split} images cannot be "
                          f"rebuilt; use --split test")
    defaults = {**Config().to_dict(), **LEGACY_DEFAULTS}
    return {k: (cfg or {}).get(k, defaults[k]) for k in SPLIT_KEYS}


def class_names(data: SSLData):
    """The dataset's class names, or the class indices where it has none."""
    return list(data.class_names) or [f"class{i}" for i in range(data.num_classes)]


def check_classes(state: dict, data: SSLData, source: str) -> None:
    model_classes = state["arch"].get("num_classes") if isinstance(state["arch"], dict) else None
    if model_classes != data.num_classes:
        raise ConfigError(f"{source} is a model for {model_classes} classes, the data has {data.num_classes}")


def load_data(data_dir: str, settings: dict, state: dict, source: str) -> SSLData:
    data = prepare_data(data_dir, settings["n_labeled"], settings["n_valid"], settings["seed"],
                        dataset=settings["dataset"], image_size=settings["image_size"])
    check_classes(state, data, source)
    return data


def recalibration_images(data: SSLData, n: int, seed: int) -> torch.Tensor:
    """``n`` training images (labeled and unlabeled, never validation), a fixed random choice by the run's seed."""
    pool = torch.cat([data.labeled.images, data.unlabeled.images])
    if n > len(pool):
        raise ConfigError(f"--recalibrate-bn {n}: only {len(pool)} training images are available")
    return pool[torch.from_numpy(np.random.RandomState(seed).permutation(len(pool))[:n])]


def evaluate_checkpoint(path: str, state: dict, data: SSLData, settings: dict, args, rt: Runtime) -> Evaluation:
    """Rebuild the model, optionally re-estimate its batch norm, predict the split and compute the report."""
    model = model_from_checkpoint(state, args.weights, path).to(rt.device, memory_format=rt.memory_format)
    if args.recalibrate_bn:
        recalibrate_bn(model, recalibration_images(data, args.recalibrate_bn, settings["seed"]),
                       args.batch_size or RECALIBRATION_BATCH,
                       rt.device, rt.memory_format, rt.autocast())
    ds = getattr(data, args.split)
    if len(ds) == 0:
        raise ConfigError(f"the {args.split} split of {path} is empty (n_valid = {settings['n_valid']})")
    start = time.perf_counter()
    logits = predict(model, ds.images, args.batch_size, rt.device, rt.memory_format, rt.autocast())
    elapsed = time.perf_counter() - start
    logits, labels = logits.numpy(), ds.labels.numpy()
    report = classification_report(logits, labels, class_names(data))
    info = {"checkpoint": path, "step": state.get("step"), "weights": args.weights, "model_name": state["model_name"],
            "arch": state["arch"], "config": state.get("config"), "split": args.split, "split_size": len(ds),
            "recalibrate_bn": args.recalibrate_bn, "img_per_sec": len(ds) / max(elapsed, 1e-9),
            "device": str(rt.device), "amp": str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "none"}
    return Evaluation(info, report, logits, labels)


def default_out(args) -> str:
    name = f"eval-{args.weights}-{args.split}" + (f"-bn{args.recalibrate_bn}" if args.recalibrate_bn else "")
    return os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), name)


def write_outputs(ev: Evaluation, out: str) -> None:
    names = [row["class"] for row in ev.report["per_class"]]
    write_json({**ev.info, **ev.report}, os.path.join(out, "metrics.json"))
    write_per_class_csv(ev.report, os.path.join(out, "per_class.csv"))
    write_predictions(ev.logits, ev.labels, out)
    bn = f", BN re-estimated on {ev.info['recalibrate_bn']}" if ev.info["recalibrate_bn"] else ""
    title = f"{os.path.basename(ev.info['checkpoint'])} ({ev.info['weights']}, {ev.info['split']}{bn}): " \
            f"top-1 {ev.report['top1']:.2f} %"
    plot_confusion_matrix(ev.report["confusion_matrix"], names, os.path.join(out, "confusion_matrix.png"), title)
    plot_reliability(ev.report["reliability"], ev.report["ece"], os.path.join(out, "reliability.png"))


def prepare_compare(args, settings: dict, data: SSLData, data_dir: str):
    """Load --compare (B) and its images before any work, so a bad B fails before anything is written."""
    state = load(args.compare, "--compare")
    settings_b = split_settings(state, args.split, args.compare)
    if args.split != "test" and settings_b != settings:
        raise ConfigError(f"--compare {args.compare} was trained on another split ({settings_b} vs {settings}), "
                          f"so its {args.split} images differ; compare on --split test")
    check_classes(state, data, args.compare)
    data_b = data if settings_b == settings else load_data(data_dir, settings_b, state, args.compare)
    return state, data_b, settings_b


def write_comparison(a: Evaluation, b: Evaluation, out: str) -> str:
    """compare.json and compare_confusion_matrix.png (B − A); returns the printed comparison."""
    names = [row["class"] for row in a.report["per_class"]]
    comparison = compare_reports(a.report, b.report, names)
    write_json({"a": a.info, "b": b.info, **comparison}, os.path.join(out, "compare.json"))
    plot_confusion_difference(comparison["confusion_matrix_diff"], names,
                              os.path.join(out, "compare_confusion_matrix.png"))
    return format_comparison(a.info, b.info, comparison, names)


def load(path: str, flag: str = "--checkpoint") -> dict:
    """load_checkpoint with its refusal as a ConfigError; torch's warning about a foreign pickle protocol is
    silenced, as such a file is either refused in one line or read correctly."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(f"{flag}: {err}") from None


def run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rt = Runtime(device, resolve_amp(args.amp, device), resolve_memory_format("auto", device))
    state = load(args.checkpoint)
    settings = split_settings(state, args.split, args.checkpoint)
    data_dir = args.data_dir or ((state.get("config") or {}).get("data_dir") or Config().data_dir)
    data = load_data(data_dir, settings, state, args.checkpoint)
    other = prepare_compare(args, settings, data, data_dir) if args.compare else None
    a = evaluate_checkpoint(args.checkpoint, state, data, settings, args, rt)
    b = evaluate_checkpoint(args.compare, *other, args, rt) if other else None
    out = args.out or default_out(args)
    try:
        os.makedirs(out, exist_ok=True)
        write_outputs(a, out)
        print(format_report(a.info, a.report, [row["class"] for row in a.report["per_class"]]))
        if b is not None:
            print("\n" + write_comparison(a, b, out))
    except OSError as err:
        raise ConfigError(f"cannot write the results to {out}: {err}") from None
    print(f"\nwritten to {out}")
