#!/usr/bin/env python
"""Render a sweep folder as the paper's tables: ``python scripts/tables.py DIR`` → DIR/table.md, DIR/table.csv
(and DIR/labels.png for the label sweep), printed too. See ``python scripts/tables.py --help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup.commands.tables import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
