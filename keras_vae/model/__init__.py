"""The model: its settings, its latent side, the `VAE` itself, and its files.

    config.py   ModelConfig: the one list of the VAE's settings, their checks
                and parameter counts (no Keras: the command line checks flags
                with it before any engine loads)
    latents.py  priors (N(0, I), VampPrior) and hierarchies (one, two layers)
    vae.py      VAE(keras.Model): the forward pass, the objective, generation
    saving.py   save_model, and load_model: the one safe loader

`keras_vae.model.VAE` is the class registered as `keras_vae>VAE`. The names
of the Keras-using modules load on first use (see `keras_vae.backend.lazy_exports`).
"""

from keras_vae.backend import lazy_exports
from keras_vae.model.config import LATENT_LAYERS, PRIORS, ModelConfig

__getattr__ = lazy_exports(
    __name__,
    {
        "VAE": "keras_vae.model.vae",
        "LOSS_NAMES": "keras_vae.model.vae",
        "fresh_copy": "keras_vae.model.vae",
        "copy_variables": "keras_vae.model.vae",
        "load_model": "keras_vae.model.saving",
        "save_model": "keras_vae.model.saving",
    },
)

__all__ = [
    "LATENT_LAYERS", "LOSS_NAMES", "PRIORS", "VAE", "ModelConfig", "copy_variables", "fresh_copy",
    "load_model", "save_model",
]
