"""The declarations of the algorithms in ``semisup/algorithms/``, read without importing them (or torch).

The configuration (below the algorithms) checks flags against them; ``semisup.algorithms.load`` imports one.

Every ``*.py`` file in ``semisup/algorithms/`` that assigns ``NAME`` at module level is an algorithm. Its
declarations are read with ``ast`` (never imported here), so ``train.py --help`` lists every algorithm, its flags
and their defaults without paying for ``import torch``:

    NAME = "pi-model"                     # the --algorithm value
    CLASS = "PiModel"                     # the class that implements ``base.Algorithm``
    SUMMARY = "one line for --help"
    OPTIONS = {"lambda_u": (10.0, "help text"), "pl_loss": ("official", "help", ("official", "masked"))}
    DEFAULTS = {"wd": 0.002}              # optional: shared settings whose default differs for this algorithm
    LIKE = ("fixmatch", ("uratio",))      # optional: that algorithm's DEFAULTS and these of its OPTIONS, as
                                          # declared there (this file's own OPTIONS and DEFAULTS win)
    NEEDS_EMA = True                      # optional: the algorithm reads the EMA model (--ema-decay 0 refused)
    RAMP_SHARE = 0.4                      # optional: a consistency ramp over this share of the run, with the
                                          # --rampup-share/--rampup-kimg/--rampup-steps options (RAMP_OPTIONS)
    STEP_COST = 7                         # image passes per labeled image, forward 1 and backward 2 (sweep estimates)

An option is a flag of its own algorithms only: any other algorithm refuses it with one line (``config.validate``).
Several algorithms may declare the same option (``lambda_u``, ``alpha``) with their own defaults; its help is the
first declaration's, in the order of ``FIRST`` then by name.
"""
import ast
import os
from dataclasses import dataclass
from typing import Dict, Tuple

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "algorithms")
FIRST = ("mixmatch", "supervised")  # listed first in --help and the docs; the rest follow by name
Option = Tuple[object, str, Tuple]  # (default, help, choices or ())


@dataclass(frozen=True)
class Spec:
    """What an algorithm file declares: its name, class, one-line summary, options and changed defaults."""
    name: str
    module: str
    cls: str
    summary: str
    options: Dict[str, Option]
    defaults: Dict[str, object]
    needs_ema: bool = False
    step_cost: int = 3


def _literals(path: str) -> dict:
    """The module-level ``NAME = literal`` assignments of a Python file, without running it."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("NAME", "CLASS", "SUMMARY", "OPTIONS", "DEFAULTS", "NEEDS_EMA", "STEP_COST",
                        "RAMP_SHARE", "LIKE"):
                found[name] = ast.literal_eval(node.value)
    return found


# The options of an algorithm that declares RAMP_SHARE (the official baselines' warmup_pos), its value the default.
RAMP_OPTIONS = {
    "rampup_share": "the consistency weight rises linearly from 0 over this share of the run's images (the official "
                    "warmup_pos)",
    "rampup_kimg": "lambda_u rises linearly from 0 over this many thousand (x1024) labeled images; > 0 replaces "
                   "--rampup-share",
    "rampup_steps": "if > 0: the ramp-up in optimizer steps at this run's batch size, instead of --rampup-kimg or "
                    "--rampup-share",
}


def _spec(module: str, found: dict) -> Spec:
    declared = dict(found.get("OPTIONS", {}))
    if "RAMP_SHARE" in found:
        defaults = {"rampup_share": found["RAMP_SHARE"], "rampup_kimg": 0.0, "rampup_steps": 0}
        for key, help_text in RAMP_OPTIONS.items():
            declared.setdefault(key, (defaults[key], help_text))
    options = {}
    for key, value in declared.items():
        default, help_text, *choices = value
        options[key] = (default, help_text, tuple(choices[0]) if choices else ())
    return Spec(found["NAME"], module, found["CLASS"], found.get("SUMMARY", ""), options,
                dict(found.get("DEFAULTS", {})), bool(found.get("NEEDS_EMA", False)),
                int(found.get("STEP_COST", 3)))


def _inherit(found: dict, declared: Dict[str, dict]) -> dict:
    """``found`` with what its ``LIKE = ("fixmatch", ("lambda_u", ...))`` takes from that algorithm's file: its
    DEFAULTS (the recipe) and the named OPTIONS as declared there; the file's own declarations win."""
    if "LIKE" not in found:
        return found
    name, keys = found["LIKE"]
    base = _inherit(declared[name], declared)
    options = {key: base["OPTIONS"][key] for key in keys}
    return {**found, "OPTIONS": {**options, **found.get("OPTIONS", {})},
            "DEFAULTS": {**base.get("DEFAULTS", {}), **found.get("DEFAULTS", {})}}


def discover(folder: str = FOLDER) -> Dict[str, Spec]:
    """Every algorithm file in ``folder``, keyed by NAME, in --help order."""
    modules = {}
    for filename in sorted(os.listdir(folder)):
        if not filename.endswith(".py") or filename.startswith("_"):
            continue
        found = _literals(os.path.join(folder, filename))
        if "NAME" in found:
            modules[found["NAME"]] = (filename[:-3], found)
    declared = {name: found for name, (_, found) in modules.items()}
    specs = {name: _spec(module, _inherit(found, declared)) for name, (module, found) in modules.items()}
    order = [n for n in FIRST if n in specs] + sorted(n for n in specs if n not in FIRST)
    return {name: specs[name] for name in order}


SPECS: Dict[str, Spec] = discover()
NAMES = tuple(SPECS)


def all_options() -> Dict[str, Option]:
    """Every option of every algorithm: name → the first declaration's (default, help, choices)."""
    merged = {}
    for spec in SPECS.values():
        for key, option in spec.options.items():
            merged.setdefault(key, option)
    return merged


def owners(option: str) -> Dict[str, object]:
    """The algorithms that take ``option``, each with its default."""
    return {name: spec.options[option][0] for name, spec in SPECS.items() if option in spec.options}


def _shown(value) -> str:
    """A default as --help writes it: booleans as on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def recipe_default(key: str, default) -> str:
    """--help's default of a shared setting (``config.RECIPE``): ``default``, then each other value with the
    algorithms whose DEFAULTS declare it, e.g. "adam; sgd for fixmatch, remixmatch, uda". Made from the
    declarations, so an algorithm file that brings its own recipe is named without editing the help."""
    values: Dict[object, list] = {}
    for name, spec in SPECS.items():
        if key in spec.defaults and spec.defaults[key] != default:
            values.setdefault(spec.defaults[key], []).append(name)
    return "; ".join([_shown(default)] + [f"{_shown(v)} for {', '.join(names)}" for v, names in values.items()])
