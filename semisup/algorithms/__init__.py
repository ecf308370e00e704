"""The algorithms, one file each (``algorithm_specs`` reads their declarations without importing them).

``load(name)`` imports the file of one algorithm and returns its class; the names, options and defaults every
algorithm declares are ``SPECS``, ``NAMES``, ``all_options`` and ``owners``, re-exported from ``algorithm_specs``.
"""
from ..algorithm_specs import FIRST, FOLDER, NAMES, RAMP_OPTIONS, SPECS, Spec, all_options, discover, owners

__all__ = ["FIRST", "FOLDER", "NAMES", "RAMP_OPTIONS", "SPECS", "Spec", "all_options", "discover", "load", "owners"]


def load(name: str):
    """The class of algorithm ``name`` (this imports its file, and torch)."""
    import importlib

    spec = SPECS[name]
    return getattr(importlib.import_module(f"{__name__}.{spec.module}"), spec.cls)
