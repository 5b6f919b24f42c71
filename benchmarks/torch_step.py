"""Where the torch backend's training step spends its time, against the loop.

    python benchmarks/torch_step.py [--batch-size 128] [--repeats 200]

Times the parts of one training step of keras_vae's default VAE on the torch
backend (forward pass with the losses, and each of its parts: encoder,
sampling, decoder, losses; forward and backward, Keras's `Adam.apply`, the
fused Adam the torch step uses instead, the loss trackers, the whole
`train_step`) and the same parts of the plain PyTorch loop of
benchmarks/torch_loop.py, on one fixed batch, in one process. Prints a
Markdown table of milliseconds per step: the best of 5 means over `--repeats`
calls each, so that the machine's slow spells count least.

One row times only the matrix products (`mm`, `addmm`) inside forward and
backward, the median over `--repeats` steps, and a last line counts them:
what is left of a part once they are taken out is Python and small
element-wise kernels.
"""

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import torch_loop  # noqa: E402
from timing import milliseconds, warm_up  # noqa: E402
from keras_vae import VAE, engines  # noqa: E402


class _ProductTimer(TorchDispatchMode):
    """Counts the matrix products run under it and adds up their seconds."""

    PRODUCTS = ("mm", "addmm")

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in self.PRODUCTS:
            return func(*args, **(kwargs or {}))
        start = time.perf_counter()
        result = func(*args, **(kwargs or {}))
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return result


def matrix_products(function, repeats):
    """The matrix products of one call of `function()`.

    Returns:
        A pair: milliseconds spent in them per call (the median over
        `repeats` calls, after `warm_up`), and how many there are per call.
    """
    warm_up(function, repeats)
    per_call = []
    for _ in range(repeats):
        with _ProductTimer() as timer:
            function()
        per_call.append(timer.seconds * 1e3)
    return statistics.median(per_call), timer.calls


#: The forward pass's parts, timed one by one in both models.
FORWARD_PARTS = ("forward: encoder", "forward: sampling", "forward: decoder", "forward: losses")


def forward_parts(functions, repeats):
    """Milliseconds of each of `functions`, one per name in `FORWARD_PARTS`."""
    return {name: milliseconds(part, repeats) for name, part in zip(FORWARD_PARTS, functions, strict=True)}


def keras_parts(images, repeats):
    keras.utils.set_random_seed(0)
    model = VAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_weights)

    def forward_backward():
        model.zero_grad()
        losses = model.compute_losses(images, training=True)
        losses["loss"].backward()
        return losses

    losses = forward_backward()
    outputs = model(images, training=True)
    z_mean, z_log_var, z = outputs["z_mean"], outputs["z_log_var"], outputs["z"]
    variables = model.trainable_weights
    gradients = [v.value.grad for v in variables]

    def keras_adam():
        with torch.no_grad():
            model.optimizer.apply(gradients, variables)

    def fused_adam():
        with torch.no_grad():
            engines.current.fused_adam(model.optimizer, gradients, variables)

    products_ms, products = matrix_products(forward_backward, repeats)
    return {
        "products per forward + backward": products,
        "forward + losses": milliseconds(lambda: model.compute_losses(images, training=True), repeats),
        **forward_parts([
            lambda: model.encode_tensors(images, training=True),
            lambda: model.sampling([z_mean, z_log_var]),
            lambda: model.decoder(z, training=True),
            lambda: model.losses_from_outputs(outputs),
        ], repeats),
        "forward + backward": milliseconds(forward_backward, repeats),
        "matrix products in forward + backward": products_ms,
        "Adam: Keras's optimizer.apply": milliseconds(keras_adam, repeats),
        "Adam: fused (what the step uses)": milliseconds(fused_adam, repeats),
        "loss trackers": milliseconds(lambda: engines.common.update_trackers(model, losses), repeats),
        "whole train_step": milliseconds(lambda: model.train_step(images), repeats),
    }


def loop_parts(images, repeats):
    torch.manual_seed(0)
    model = torch_loop.VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    flat = images.reshape(len(images), -1)

    def forward_backward():
        optimizer.zero_grad()
        torch_loop.loss_fn(flat, *model(flat)).backward()

    def step():
        forward_backward()
        optimizer.step()

    forward_backward()
    products_ms, products = matrix_products(forward_backward, repeats)
    z_mean, z_log_var = model.encode(flat)
    z = model.reparameterize(z_mean, z_log_var)
    logits = model.decode(z)
    return {
        "products per forward + backward": products,
        "forward + losses": milliseconds(lambda: torch_loop.loss_fn(flat, *model(flat)), repeats),
        **forward_parts([
            lambda: model.encode(flat),
            lambda: model.reparameterize(z_mean, z_log_var),
            lambda: model.decode(z),
            lambda: torch_loop.loss_fn(flat, logits, z_mean, z_log_var),
        ], repeats),
        "forward + backward": milliseconds(forward_backward, repeats),
        "matrix products in forward + backward": products_ms,
        "Adam: torch.optim.Adam": milliseconds(optimizer.step, repeats),
        "whole step": milliseconds(step, repeats),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200, help="calls per timing")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((args.batch_size, 28, 28, 1), dtype="float32"))
    print(f"milliseconds per step, batch {args.batch_size}, {torch.get_num_threads()} threads\n")
    print("| part | keras_vae on torch | plain PyTorch loop |\n|---|---|---|")
    keras_times, loop_times = keras_parts(images, args.repeats), loop_parts(images, args.repeats)
    rows = [
        ("forward + losses", "forward + losses"),
        *[(part, part) for part in FORWARD_PARTS],
        ("forward + backward", "forward + backward"),
        ("matrix products in forward + backward",) * 2,
        ("Adam: Keras's optimizer.apply", None),
        ("Adam: fused (what the step uses)", "Adam: torch.optim.Adam"),
        ("loss trackers", None),
        ("whole train_step", "whole step"),
    ]
    for keras_name, loop_name in rows:
        loop_cell = f"{loop_times[loop_name]:.2f} ({loop_name})" if loop_name else "–"
        print(f"| {keras_name} | {keras_times[keras_name]:.2f} | {loop_cell} |")
    count = "products per forward + backward"
    print(f"\nmatrix products per forward + backward: {keras_times[count]} in keras_vae, "
          f"{loop_times[count]} in the loop")


if __name__ == "__main__":
    main()
