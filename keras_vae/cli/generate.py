"""Generate digits from a saved model: `python scripts/generate.py MODEL.keras`.

z is drawn with NumPy's seeded generator, so the same model file and seed
give the same images on every backend. A conditional VAE (trained with
`--conditional`) generates the digit chosen with `--digit 7`, or with
`--digit all` (its default) one row per digit, the same z in each column.
"""

import argparse
from pathlib import Path

import numpy as np

from keras_vae import files, images
from keras_vae.cli import flags as cli
from keras_vae.model import load_model
from keras_vae.errors import UserError

PROG = "generate.py"


def parse_digit(text):
    """`--digit`: `"all"` or a class number, for `argparse`."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a digit 0-9 or all, got {text!r}")


def parse_args(argv, prog=PROG):
    parser = cli.ArgumentParser(prog=prog, description="Decode samples from the prior of a saved keras-vae model.")
    cli.add_model_argument(parser)
    parser.add_argument("--num", type=int, default=None, help="number of images (default 64), or images per digit with --digit all (default 10)")
    parser.add_argument("--digit", type=parse_digit, default=None, help="conditional models only: the digit (class) to generate, 0-9, or 'all' for one row per digit (the default for them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draw")
    parser.add_argument("--output", default="samples.png", help="PNG grid to write")
    parser.add_argument("--npy", default=None, help="also save the pixel probabilities, shape (num, 28, 28), to this .npy file")
    parser.add_argument("--grid", type=cli.parse_grid, default=None, metavar="ROWSxCOLS", help="grid shape (default: near-square)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def digit_choice(digit, model):
    """`None` (unconditional), `"all"` or a class index, from `--digit`."""
    if not model.conditional:
        if digit is not None:
            raise UserError("--digit needs a conditional model (trained with --conditional)")
        return None
    if digit is None or digit == "all":
        return "all"
    if not 0 <= digit < model.num_classes:
        raise UserError(f"--digit must be 0-{model.num_classes - 1} or all, got {digit!r}")
    return digit


def check_grid(grid, num, digit):
    """Raises `UserError` if `--grid` cannot hold the images or does not apply."""
    if grid is None:
        return
    if digit == "all":
        raise UserError("--grid does not apply to --digit all (one row per digit)")
    rows, cols = grid
    if rows * cols < num:
        raise UserError(f"--grid {rows}x{cols} cannot hold --num {num} images")


def main(argv, prog=PROG):
    args = parse_args(argv, prog)
    if args.num is not None and args.num <= 0:
        raise UserError(f"--num must be > 0, got {args.num}")
    if Path(args.output).suffix.lower() != ".png":
        raise UserError(f"--output {args.output} must end in .png")
    if args.npy and Path(args.npy).suffix != ".npy":
        raise UserError(f"--npy {args.npy} must end in .npy")
    check_grid(args.grid, args.num or 64, args.digit)

    model = load_model(cli.resolve_model(args))
    digit = digit_choice(args.digit, model)
    check_grid(args.grid, args.num or 64, digit)
    if digit == "all":
        per_class = args.num or 10
        samples = model.generate_by_class(per_class, seed=args.seed)
        rows, cols = model.num_classes, per_class
        what = f"{per_class} samples of each of {model.num_classes} digits"
    else:
        num = args.num or 64
        rows, cols = args.grid or images.grid_shape(num)
        samples = model.generate(num, seed=args.seed, labels=digit)
        what = f"{num} samples" + ("" if digit is None else f" of digit {digit}")
    images.save_grid(args.output, samples, rows, cols)
    print(f"{prog}: wrote {what} to {args.output}")
    if args.npy:
        with files.atomic_path(args.npy) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, samples[..., 0])
        print(f"{prog}: wrote pixel probabilities to {args.npy}")

