"""Draw the pictures of a saved model: `python scripts/visualize.py MODEL.keras`.

Writes latent_scatter.png, latent_manifold.png, interpolation.png and
reconstructions.png; with the model's training-run folder (by default the
model's own folder, when it holds history.csv and samples/) also
training_curves.png and samples.gif. See keras_vae/visualize.py.
"""

from pathlib import Path


from keras_vae import engines, visualize
from keras_vae.cli import flags


def main(args, prog):
    """Draws the pictures of `args.model` into `args.output_dir`."""
    flags.announce_backend(prog, ", ".join(engines.list_devices()))
    model, images, labels, *_ = flags.load_model_and_test_split(args, default_binarize="none")
    written = visualize.make_figures(
        model, images, labels, args.output_dir, run_dir=args.run_dir or Path(args.model).parent
    )
    for path in written:
        print(f"{prog}: wrote {path}")

