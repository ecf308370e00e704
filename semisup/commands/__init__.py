"""The command lines: each module parses its flags, calls the layers below, and prints one line per refusal.

``train.py``, ``evaluate.py``, ``scripts/*.py`` and ``python -m semisup.compress`` end here; nothing in the package
imports this layer (the import contracts in setup.cfg, drawn in docs/developing.md).
"""
import argparse
import sys

from ..config import ConfigError


def checked(command, args, prog: str):
    """``command(args)``, or None after printing its ConfigError as the one line ``prog: error: …``."""
    try:
        return command(args)
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return None


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)
