"""The paper's tables: sweeps of train.py runs (sweep), their rendering beside the paper (tables), and the
paper's own numbers (numbers)."""
