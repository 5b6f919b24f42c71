"""keras-vae: a Variational Autoencoder on MNIST in Keras 3.

One codebase for the TensorFlow, JAX and PyTorch backends, chosen with the
`KERAS_BACKEND` environment variable.

`import keras_vae` is light: the names below that need Keras load it on first
use (`keras_vae.VAE`, `keras_vae.load_model`, ...), after checking the backend
and quietening TensorFlow's start-up; so the command line answers `--help`
and flag errors before any engine loads. Loading the model's module
registers `VAE` with Keras (as `keras_vae>VAE`), so after
`keras_vae.load_model(...)` or any use of `keras_vae.VAE`,
`keras.saving.load_model("model.keras")` works too; in a process that had
imported Keras before keras-vae, `import keras_vae` registers it at once.
"""

import sys
import warnings

from keras_vae.backend import lazy_exports, start
from keras_vae.errors import BackendError, DataUnavailableError, ModelFileError, UserError

__version__ = "0.1.0"

# Keras's TensorFlow backend converts tensors with `np.array(tensor)`, and
# TensorFlow's tensors predate NumPy 2's `copy` argument: NumPy warns at every
# conversion (thousands per run) about code that is neither ours nor the user's.
warnings.filterwarnings(
    "ignore",
    message=r"__array__ implementation doesn't accept a copy keyword",
    category=DeprecationWarning,
    module=r"keras\.src\.backend\.tensorflow",
)

_EXPORTS = {
    **dict.fromkeys(
        ("VAE", "ModelConfig", "load_model", "save_model", "fresh_copy"), "keras_vae.model"
    ),
    "Sampling": "keras_vae.layers",
    **dict.fromkeys(("build_decoder", "build_encoder"), "keras_vae.networks"),
    **dict.fromkeys(
        ("elbo_losses", "iwae_loss", "kl_divergence", "objective", "reconstruction_loss"),
        "keras_vae.losses",
    ),
    "load_pretrained": "keras_vae.pretrained",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BackendError", "DataUnavailableError", "ModelFileError", "UserError", "start",
    *sorted(_EXPORTS),
]

if "keras" in sys.modules:  # Keras is loaded already: register the model now
    __getattr__("VAE")
