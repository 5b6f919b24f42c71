"""Export a saved model's decoder and encoder: `python scripts/export.py MODEL.keras`.

Writes `decoder` (z -> pixel probabilities) and `encoder` (images ->
[z_mean, z_log_var]) through Keras's `export`, as TensorFlow SavedModels or
ONNX files that run without keras-vae. See keras_vae/export.py for which
backend exports which format.
"""

from keras_vae import engines, export
from keras_vae.cli import flags
from keras_vae.model import load_model


def main(args, prog):
    """Exports the networks of `args.model` into `args.output_dir`."""
    flags.announce_backend(prog, ", ".join(engines.list_devices()))
    model = load_model(args.model)
    for name, path in export.export_networks(model, args.output_dir, args.format).items():
        print(f"{prog}: wrote the {name} to {path}")
