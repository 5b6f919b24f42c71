"""`python scripts/export.py`: export a saved model's decoder and encoder for serving (SavedModel, ONNX).

The same as `keras-vae export`; the command is keras_vae/commands/export.py, and
`--help` lists its flags.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone too

from keras_vae_cli import launch  # noqa: E402

if __name__ == "__main__":
    sys.exit(launch("export", "export.py"))
