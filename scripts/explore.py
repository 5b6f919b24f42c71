"""`python scripts/explore.py`: the same as `keras-vae explore` (see keras_vae/cli/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone too

from keras_vae.cli import launch  # noqa: E402

if __name__ == "__main__":
    sys.exit(launch("explore", "explore.py"))
