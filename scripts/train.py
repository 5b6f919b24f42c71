"""`python scripts/train.py`: train a VAE on MNIST (writes a run folder).

The same as `keras-vae train`; the command is keras_vae/commands/train.py, and
`--help` lists its flags.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone too

from keras_vae_cli import launch  # noqa: E402

if __name__ == "__main__":
    sys.exit(launch("train", "train.py"))
