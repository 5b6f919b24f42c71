"""Layers that draw random numbers: reparameterized sampling, binarization."""

import keras
from keras import ops


class SeedStream(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose seeds can be moved, for a while,
    to a stream of their own: while `offset` (a pair of integers) is set,
    every seed drawn is the generator's plus `offset`.

    An engine uses it to give each replica of a step its own noise (the
    state is one, shared by the replicas; `engines/tensorflow.py`); the
    layers that draw know nothing of replicas.
    """

    offset = None

    def next(self, ordered=True):
        seed = super().next(ordered)
        return seed if self.offset is None else seed + ops.cast(self.offset, seed.dtype)


class SeededLayer(keras.layers.Layer):
    """A layer owning a seed generator (a `SeedStream`) whose state is saved.

    Keras saves a layer's variables but not the state of its seed
    generators, so a model reloaded from a file or a checkpoint would replay
    the noise stream from the start. This base class saves the generator's
    state with the layer's (otherwise empty) variables and restores it, on
    any backend.

    Args:
        seed: optional int seeding the generator. When `None`, the seed comes
            from Keras's global seed (`keras.utils.set_random_seed`).
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = SeedStream(seed)

    def save_own_variables(self, store):
        store["seed_state"] = self.seed_generator.state

    def load_own_variables(self, store):
        if "seed_state" in store:  # absent from files of older versions
            state = self.seed_generator.state
            state.assign(ops.cast(store["seed_state"], state.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="keras_vae")
class Sampling(SeededLayer):
    """Draws z ~ N(mean, exp(log_var)) as z = mean + exp(log_var / 2) * eps.

    The noise eps ~ N(0, I) comes from `keras.random.normal` with a
    `keras.random.SeedGenerator` owned by the layer. The generator's state is
    a variable, so the layer draws fresh noise at every step inside compiled
    (jit) training steps on every backend, and `stateless_call` threads it;
    it is saved with the model (see `SeededLayer`).

    Args:
        seed: optional int seeding the layer's generator.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a pair `(mean, log_var)` of tensors of the same shape.

    Returns:
        A tensor of that shape: one sample of z per row.
    """

    def call(self, inputs):
        mean, log_var = inputs
        epsilon = keras.random.normal(
            ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator
        )
        return mean + ops.exp(0.5 * log_var) * epsilon

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="keras_vae")
class DynamicBinarization(SeededLayer):
    """Replaces grey levels by a fresh Bernoulli sample during training.

    Each pixel value p in [0, 1] becomes 1 with probability p, a new draw
    every time the image is seen (Burda et al., 2015). Outside training the
    input passes through unchanged (evaluate on a fixed binarization).

    Args:
        seed: optional int seeding the layer's generator.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def call(self, images, training=False):
        if not training:
            return images
        noise = keras.random.uniform(
            ops.shape(images), dtype=images.dtype, seed=self.seed_generator
        )
        return ops.cast(noise < images, images.dtype)
