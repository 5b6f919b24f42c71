"""What a command will need in memory, checked before it starts.

A size flag (`--num`, `--iw-samples`, `--batch-size`) or a model's settings
can ask for more memory than the machine has; rather than allocate until the
allocator gives up with a traceback, each command estimates its largest
arrays from the settings (no Keras, nothing built) and refuses in one line
that names the size. The estimates are upper-bound sketches of the arrays
that grow with the request (float32, forward and backward), not a profiler:
they refuse what cannot fit, and let through what can.
"""

import math
import os

from keras_vae.errors import UserError

#: Latent vectors decoded per forward pass and device in an evaluation
#: (`evaluate.py --max-rows`): memory against speed (docs/performance.md).
MAX_ROWS = 5000
_FLOAT = 4  # bytes of a float32
#: What a weight costs in training: itself, its gradient, Adam's two moments.
_TRAINING_BYTES_PER_WEIGHT = 4 * _FLOAT


def available_bytes():
    """The memory this process may still take: `MemAvailable` on Linux,
    else the free physical memory; None where neither can be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(nbytes):
    """`nbytes` for a person: `3.2 GiB`, `512 MiB`."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{max(nbytes, 0) / 1024:.0f} KiB"


def check_fits(needed, what, available=None, hint="ask for less"):
    """Raises `UserError` if `needed` bytes exceed the memory available.

    Args:
        needed: the estimate, in bytes.
        what: the request, as the user wrote it (`--num 1000000000`).
        available: bytes available (default: `available_bytes()`).
        hint: what to do instead, the end of the message.
    """
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise UserError(
            f"{what} needs about {size_text(needed)} of memory, but this machine has "
            f"{size_text(available)} available; {hint}"
        )


def activations_per_image(settings):
    """Floats the networks compute for one image and one z (both networks).

    Args:
        settings: a `ModelConfig`.
    """
    height, width, channels = settings.image_shape
    pixels = height * width * channels
    total = 3 * pixels + 4 * settings.hidden_dim + 6 * settings.code_dim
    if settings.architecture != "mlp":
        per_stage = 2 + (4 * settings.blocks if settings.architecture == "resnet" else 0)
        for stage, filters in enumerate(settings.filters):
            cells = (height // 2 ** (stage + 1)) * (width // 2 ** (stage + 1))
            total += 2 * per_stage * cells * filters  # encoder and decoder
        total += height * width * settings.filters[0]
    return total


def training_bytes(settings, batch_size):
    """A training step: the weights with their optimizer state, and the
    activations of `batch_size` images with `iw_samples` each, kept for the
    backward pass."""
    rows = batch_size * settings.iw_samples
    return (
        settings.parameter_count() * _TRAINING_BYTES_PER_WEIGHT
        + 2 * rows * activations_per_image(settings) * _FLOAT
    )


def decoding_bytes(settings, images, batch_size=512):
    """Decoding `images` latent vectors into pixels (`generate`, pictures):
    the results, and one batch's activations."""
    pixels = math.prod(settings.image_shape)
    return (
        images * (3 * pixels + settings.code_dim + settings.num_classes) * _FLOAT
        + min(images, batch_size) * activations_per_image(settings) * _FLOAT
        + settings.parameter_count() * _FLOAT
    )


def importance_bytes(settings, iw_samples, max_rows):
    """Importance sampling with k = `iw_samples` for one group of images:
    the noise and log-weights of every sample, and one pass's activations."""
    rows = max(iw_samples, max_rows)
    return (
        rows * (2 * settings.code_dim * _FLOAT + 4 * 8)
        + max_rows * activations_per_image(settings) * _FLOAT
        + settings.parameter_count() * _FLOAT
    )
