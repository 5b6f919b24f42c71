"""Generate digits from a saved model: `python scripts/generate.py MODEL.keras`.

z is drawn with NumPy's seeded generator, so the same model file and seed
give the same images on every backend. A conditional VAE (trained with
`--conditional`) generates the digit chosen with `--digit 7`, or with
`--digit all` (its default) one row per digit, the same z in each column.
"""

import numpy as np

from keras_vae import engines, files, images
from keras_vae.cli import flags
from keras_vae.cli.parsers import check_grid
from keras_vae.errors import UserError
from keras_vae.model import load_model


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


def main(args, prog):
    """Decodes samples of the prior of `args.model` into a PNG grid."""
    flags.announce_backend(prog, ", ".join(engines.list_devices()))
    model = load_model(args.model)
    digit = digit_choice(args.digit, model)
    check_grid(args.grid, args.num or 64, digit)
    pixels = args.seed if args.sample_pixels else None
    if digit == "all":
        per_class = args.num or 10
        samples = model.generate_by_class(per_class, seed=args.seed, sample_pixels=pixels)
        rows, cols = model.num_classes, per_class
        what = f"{per_class} samples of each of {model.num_classes} digits"
    else:
        num = args.num or 64
        rows, cols = args.grid or images.grid_shape(num)
        samples = model.generate(num, seed=args.seed, labels=digit, sample_pixels=pixels)
        what = f"{num} samples" + ("" if digit is None else f" of digit {digit}")
    images.save_grid(args.output, samples, rows, cols)
    print(f"{prog}: wrote {what} to {args.output}")
    if args.npy:
        with files.atomic_path(args.npy) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, samples[..., 0] if samples.shape[-1] == 1 else samples)
        what = "sampled pixels" if args.sample_pixels else "the images p(x|z) expects (a Bernoulli decoder's pixel probabilities)"
        print(f"{prog}: wrote {what} to {args.npy}")

