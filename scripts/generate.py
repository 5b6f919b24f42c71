"""`python scripts/generate.py`: decode samples of a saved model into a PNG grid.

The same as `keras-vae generate`; the command is keras_vae/commands/generate.py, and
`--help` lists its flags.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone too

from keras_vae_cli import launch  # noqa: E402

if __name__ == "__main__":
    sys.exit(launch("generate", "generate.py"))
