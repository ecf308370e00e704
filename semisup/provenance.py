"""Where a result came from: the torch version and the source tree's git commit, and whether the tree had changes
that commit does not hold. Written into config.json and summary.json so a number can be traced to its code."""
import os
import subprocess
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def provenance() -> dict:
    """{"torch": version, "git_commit": sha or None (not a git checkout), "git_dirty": bool or None}."""
    import torch

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"torch": torch.__version__, "git_commit": commit, "git_dirty": bool(status) if commit else None}
