"""Draw the pictures of a saved model: `python scripts/visualize.py MODEL.keras`.

Writes latent_scatter.png, latent_manifold.png, interpolation.png and
reconstructions.png; with the model's training-run folder (by default the
model's own folder, when it holds history.csv and samples/) also
training_curves.png and samples.gif. See keras_vae/visualize.py.
"""

from pathlib import Path

from keras_vae import visualize
from keras_vae.cli import flags as cli
from keras_vae.errors import UserError

PROG = "visualize.py"


def parse_args(argv, prog=PROG):
    parser = cli.ArgumentParser(prog=prog, description="Pictures of a saved keras-vae model and of its training run.")
    cli.add_test_data_flags(parser, default_binarize="none")
    parser.add_argument("--output-dir", default=None, help="folder for the pictures (default: figures/ beside the model; runs/pretrained/NAME/figures for --pretrained)")
    parser.add_argument("--run-dir", default=None, help="training-run folder with history.csv and samples/ (default: the model's folder)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv, prog=PROG):
    args = parse_args(argv, prog)
    if args.num_examples is not None and args.num_examples < 10:
        raise UserError(f"--num-examples must be >= 10, got {args.num_examples}")
    model_path = Path(cli.resolve_model(args))
    output_dir = Path(args.output_dir or cli.default_output(args, "figures"))
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir} exists and is not a folder")
    model, images, labels, *_ = cli.load_model_and_test_split(args, default_binarize="none")
    written = visualize.make_figures(
        model, images, labels, output_dir, run_dir=args.run_dir or model_path.parent
    )
    for path in written:
        print(f"{prog}: wrote {path}")

