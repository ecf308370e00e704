"""``python -m semisup.compress --checkpoint runs/x/last.pt --method slim --ratio 0.5 --out runs/x-slim50``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
