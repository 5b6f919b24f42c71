"""Exporting a trained VAE's networks for serving, through Keras's `export`.

A served VAE is two functions, exported as two artifacts that run without
keras-vae (or Keras):

- the decoder, z `(n, latent_dim)` -> pixel probabilities `(n, 28, 28, 1)`
  (for an 8-bit likelihood, the distribution's mean): `VAE.decode`, the
  generator;
- the encoder, images `(n, 28, 28, 1)` -> `[z_mean, z_log_var]`:
  `VAE.encode`, the posterior q(z|x).

A conditional VAE's networks take the one-hot label as a second input
(`label`, `(n, num_classes)`).

Formats (`FORMATS`), and the backends Keras 3 exports them from:

- `tf_saved_model`: a TensorFlow SavedModel (`tf.saved_model.load`, TF
  Serving), from the tensorflow and jax backends. Keras's torch path needs
  `torch-xla` and fails on dynamic batch sizes, so it is refused there.
- `onnx`: an ONNX file (`onnxruntime`), from the tensorflow backend (with the
  `onnx` and `tf2onnx` packages) and the torch backend (with `onnx`). The
  jax backend would need `jax2onnx`, which is not supported here.

A `.keras` file loads on every backend, so any model can be exported: pick a
backend that has the format.
"""

import shutil
import warnings
from pathlib import Path

import keras

from keras_vae.backend import EXPORT_FORMATS, check_export_format, import_tensorflow_quietly

# What Keras's exporters say on every export, about their own internals: the
# torch tracer about Keras's shape arithmetic, tf2onnx about NumPy 2.
_EXPORTER_NOISE = ("Converting a tensor to a Python", "In the future `np.object`")

FORMATS = EXPORT_FORMATS


def serving_decoder(model):
    """The decoder as a functional model: z (and label) -> the image p(x|z)
    expects (`VAE.decode`): pixel probabilities for a Bernoulli decoder,
    named `probabilities`, else the 8-bit likelihood's mean, named `mean`."""
    z = keras.Input((model.code_dim,), name="z")
    inputs = [z]
    if model.conditional:
        inputs.append(keras.Input((model.num_classes,), name="label"))
    outputs = model.decoder(inputs if model.conditional else z)
    likelihood = model.pixel_likelihood
    name = "probabilities" if likelihood.binary else "mean"
    image = keras.layers.Lambda(likelihood.mean, name=name)(outputs)
    return keras.Model(inputs, image, name="decoder")


def serving_encoder(model):
    """The encoder as a functional model: images (and label) -> [z_mean, z_log_var].

    The posterior of the decoder's input, as `VAE.encode` gives it.
    """
    posterior = model.posterior_network()
    return keras.Model(posterior.inputs, posterior.outputs, name="encoder")


def check_format(export_format, backend=None):
    """Raises `UserError` unless this backend can export `export_format`
    (`backend.check_export_format`: which backends can, what to install)."""
    check_export_format(export_format, backend or keras.backend.backend())


def _input_signature(network):
    """The signature of `network`'s one call argument: a tensor, or a list of two."""
    specs = [
        keras.InputSpec(shape=tensor.shape, dtype=tensor.dtype, name=tensor.name)
        for tensor in network.inputs
    ]
    return specs if len(specs) == 1 else [specs]


def export_networks(model, output_dir, export_format="tf_saved_model"):
    """Exports the decoder and the encoder of `model` into `output_dir`.

    Args:
        model: a `VAE`.
        output_dir: the folder to write: `decoder/` and `encoder/`
            (SavedModels), or `decoder.onnx` and `encoder.onnx`.
        export_format: one of `FORMATS`.

    Returns:
        A dict `{"decoder": path, "encoder": path}`.

    Raises:
        UserError: the format cannot be exported on this backend.
    """
    check_format(export_format)
    if export_format == "tf_saved_model":
        import_tensorflow_quietly()  # the jax backend converts through jax2tf
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".onnx" if export_format == "onnx" else ""
    written = {}
    for name, network in (("decoder", serving_decoder(model)), ("encoder", serving_encoder(model))):
        path = output_dir / f"{name}{suffix}"
        # Written beside the destination, then moved: no half an artifact.
        temporary = output_dir / f".tmp-{name}{suffix}"
        _remove(temporary)
        with warnings.catch_warnings():
            for message in _EXPORTER_NOISE:
                warnings.filterwarnings("ignore", message=message)
            network.export(
                str(temporary), format=export_format, verbose=False,
                input_signature=_input_signature(network),
            )
        _remove(path)
        temporary.rename(path)
        written[name] = path
    return written


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
