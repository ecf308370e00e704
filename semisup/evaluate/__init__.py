"""evaluate.py's pieces: the command (evaluation), the numbers (metrics), their text and files (report), the
figures (plots) and batch-norm re-estimation (restore)."""
