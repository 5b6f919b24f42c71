"""Generate digits from a saved model: `python scripts/generate.py MODEL.keras`.

z is drawn with NumPy's seeded generator, so the same model file and seed
give the same images on every backend.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    from keras_vae import cli, files, images
except ImportError as error:  # an unknown or missing KERAS_BACKEND
    sys.exit(f"generate.py: error: {error}")

from keras_vae.errors import UserError

PROG = "generate.py"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Decode samples from the prior of a saved keras-vae model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="a .keras file written by train.py")
    parser.add_argument("--num", type=int, default=64, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draw")
    parser.add_argument("--output", default="samples.png", help="PNG grid to write")
    parser.add_argument("--npy", default=None, help="also save the pixel probabilities, shape (num, 28, 28), to this .npy file")
    parser.add_argument("--grid", type=cli.parse_grid, default=None, metavar="ROWSxCOLS", help="grid shape (default: near-square)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.num <= 0:
        raise UserError(f"--num must be > 0, got {args.num}")
    rows, cols = args.grid or images.grid_shape(args.num)
    if rows * cols < args.num:
        raise UserError(f"--grid {rows}x{cols} cannot hold --num {args.num} images")
    if Path(args.output).suffix.lower() != ".png":
        raise UserError(f"--output {args.output} must end in .png")
    if args.npy and Path(args.npy).suffix != ".npy":
        raise UserError(f"--npy {args.npy} must end in .npy")

    model = files.load_model(args.model)
    samples = model.generate(args.num, seed=args.seed)
    images.save_grid(args.output, samples, rows, cols)
    print(f"{PROG}: wrote {args.num} samples to {args.output}")
    if args.npy:
        with files.atomic_path(args.npy) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, samples[..., 0])
        print(f"{PROG}: wrote pixel probabilities to {args.npy}")


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
