"""keras-vae: a Variational Autoencoder on MNIST in Keras 3.

One codebase for the TensorFlow, JAX and PyTorch backends, chosen with the
`KERAS_BACKEND` environment variable. Importing the package registers its
layers and model, so `keras.saving.load_model("model.keras")` works after
`import keras_vae`.
"""

import os
import warnings

from keras_vae.backend import (  # noqa: E402
    QUIET_TF_LOG_LEVEL,
    check_backend,
    import_tensorflow_quietly,
)

# Quieten TensorFlow's C++ logging unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_LOG_LEVEL)
if check_backend() == "tensorflow":  # Keras imports it: do it quietly first
    import_tensorflow_quietly()
# Keras's TensorFlow backend converts tensors with `np.array(tensor)`, and
# TensorFlow's tensors predate NumPy 2's `copy` argument: NumPy warns at every
# conversion (thousands per run) about code that is neither ours nor the user's.
warnings.filterwarnings(
    "ignore",
    message=r"__array__ implementation doesn't accept a copy keyword",
    category=DeprecationWarning,
    module=r"keras\.src\.backend\.tensorflow",
)

from keras_vae.errors import (  # noqa: E402
    BackendError,
    DataUnavailableError,
    ModelFileError,
    UserError,
)
from keras_vae.layers import Sampling  # noqa: E402
from keras_vae.losses import (  # noqa: E402
    elbo_losses,
    iwae_loss,
    kl_divergence,
    objective,
    reconstruction_loss,
)
from keras_vae.model import VAE, ModelConfig, load_model, save_model  # noqa: E402
from keras_vae.networks import build_decoder, build_encoder  # noqa: E402
from keras_vae.pretrained import load_pretrained  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "BackendError",
    "DataUnavailableError",
    "ModelConfig",
    "ModelFileError",
    "Sampling",
    "UserError",
    "build_decoder",
    "build_encoder",
    "elbo_losses",
    "iwae_loss",
    "kl_divergence",
    "load_model",
    "load_pretrained",
    "objective",
    "reconstruction_loss",
    "save_model",
]
