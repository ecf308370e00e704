#!/usr/bin/env python
"""Run the paper's tables as sweeps of train.py runs (see ``python scripts/sweep.py --help``).

    python scripts/sweep.py table4 --out runs/paper           # Table 4: 11 ablation rows x 250/4000 labels
    python scripts/sweep.py labels --seeds 1 2 3 4 5 --out runs/paper
    python scripts/sweep.py supervised --out runs/paper
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup.commands.sweep import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
