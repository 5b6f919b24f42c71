"""The model: its settings, its latent side, the `VAE` itself, and its files.

    config.py   ModelConfig: the one list of the VAE's settings, checked and counted
    latents.py  priors (N(0, I), VampPrior) and hierarchies (one, two layers)
    vae.py      VAE(keras.Model): the forward pass, the objective, generation
    saving.py   save_model, and load_model: the one safe loader

`keras_vae.model.VAE` is the class registered as `keras_vae>VAE`.
"""

from keras_vae.model.config import LATENT_LAYERS, PRIORS, ModelConfig
from keras_vae.model.saving import load_model, save_model
from keras_vae.model.vae import LOSS_NAMES, VAE, fresh_copy

__all__ = [
    "LATENT_LAYERS", "LOSS_NAMES", "PRIORS", "VAE", "ModelConfig", "fresh_copy",
    "load_model", "save_model",
]
