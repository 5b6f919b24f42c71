"""`python scripts/visualize.py`: latent space, manifold, interpolations and training curves of a saved model.

The same as `keras-vae visualize`; the command is keras_vae/commands/visualize.py, and
`--help` lists its flags.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone too

from keras_vae_cli import launch  # noqa: E402

if __name__ == "__main__":
    sys.exit(launch("visualize", "visualize.py"))
