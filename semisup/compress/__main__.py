"""``python -m semisup.compress --checkpoint runs/x/last.pt --method slim --ratio 0.5 --out runs/x-slim50``: the
command lives in ``semisup.commands.compress``; this file only gives it the name users type."""
import sys

from ..commands.compress import main

if __name__ == "__main__":
    sys.exit(main())
