"""Export a saved model's decoder and encoder: `python scripts/export.py MODEL.keras`.

Writes `decoder` (z -> pixel probabilities) and `encoder` (images ->
[z_mean, z_log_var]) through Keras's `export`, as TensorFlow SavedModels or
ONNX files that run without keras-vae. See keras_vae/export.py for which
backend exports which format.
"""

from pathlib import Path

from keras_vae import export
from keras_vae.cli import flags as cli
from keras_vae.model import load_model
from keras_vae.errors import UserError

PROG = "export.py"


def parse_args(argv, prog=PROG):
    parser = cli.ArgumentParser(prog=prog, description="Export the decoder and encoder of a saved keras-vae model for serving.")
    cli.add_model_argument(parser)
    parser.add_argument("--format", default="tf_saved_model", choices=export.FORMATS, help="tf_saved_model (tensorflow or jax backend) or onnx (tensorflow or torch backend)")
    parser.add_argument("--output-dir", default=None, help="folder for the two artifacts (default: export-<format>/ beside the model; runs/pretrained/NAME/export-<format> for --pretrained)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv, prog=PROG):
    args = parse_args(argv, prog)
    export.check_format(args.format)  # before loading anything
    cli.resolve_model(args)
    output_dir = Path(args.output_dir or cli.default_output(args, f"export-{args.format}"))
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir} exists and is not a folder")
    model = load_model(args.model)
    for name, path in export.export_networks(model, output_dir, args.format).items():
        print(f"{prog}: wrote the {name} to {path}")
