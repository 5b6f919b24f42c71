"""Add a finished run's model to the pretrained models (for maintainers).

    python pretrained/publish.py RUN_DIR NAME "one-line description"

Writes pretrained/NAME.keras without optimizer state, recomputes its check
numbers, and rewrites models.json and README.md here. See
keras_vae/pretrained.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_vae import cli, pretrained  # noqa: E402


def main(argv):
    parser = cli.ArgumentParser(prog="publish.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run folder of train.py")
    parser.add_argument("name", help="the model's name, e.g. mlp-dynamic")
    parser.add_argument("description", help="one line for the table")
    parser.add_argument("--data-dir", default=None, help="prepared TFDS data directory")
    args = parser.parse_args(argv)
    entry = pretrained.publish(args.run_dir, args.name, args.description, data_dir=args.data_dir)
    print(f"publish.py: {args.name}: {entry['bytes'] / 1e6:.1f} MB, check {entry['check']}")


if __name__ == "__main__":
    sys.exit(cli.run(main, "publish.py"))
