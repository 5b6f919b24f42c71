"""Where the JAX backend's training epoch spends its time.

    python benchmarks/jax_step.py [--batch-size 128] [--repeats 100]

Times, in one process and in milliseconds per training step of keras_vae's
default VAE: `fit()` itself, the compiled train step alone (as `fit` calls
it, its state donated), its compiled parts (forward pass with the losses,
forward and backward, Keras's Adam), Keras's iteration over the in-memory
arrays, and the matrix products of the two large Dense layers in the layouts
the step computes them in, by XLA and, for comparison, by NumPy's BLAS.
Prints a Markdown table: the best of 5 means over `--repeats` calls each
(see `timing.milliseconds`).

The forward pass multiplies row-major operands (x @ W); the gradient of a
kernel contracts over the batch (xᵀ @ g), an operand XLA's CPU backend does
not hand to its fast matrix-multiply library, so those products run slower
than the same arithmetic in the forward layout. The last row is the same
gradient product with xᵀ copied to a row-major array first, copy included:
what the layout, not the arithmetic, costs.
"""

import argparse
import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter  # noqa: E402

from keras_vae import VAE, engines  # noqa: E402
from timing import milliseconds  # noqa: E402


def wait(outputs):
    """Blocks until a compiled call is done: its outputs are ready together."""
    jax.tree.leaves(outputs)[0].block_until_ready()


def copies(variables):
    """Fresh arrays of the variables' values: a step that donates its state
    must not free the model's own."""
    return [jax.numpy.array(v.value, copy=True) for v in variables]


def model_parts(images, batch_size, repeats):
    keras.utils.set_random_seed(0)
    model = VAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    batch = jax.numpy.asarray(images[:batch_size])
    trainable, non_trainable = copies(model.trainable_variables), copies(model.non_trainable_variables)
    state = [copies(model.trainable_variables), copies(model.non_trainable_variables),
             copies(model.optimizer.variables), copies(model.metrics_variables)]

    train_step = jax.jit(model.train_step, donate_argnums=0)

    def step():
        logs, state[:] = train_step(tuple(state), (batch,))
        wait(logs)

    def loss(trainable, non_trainable, images):
        return engines.current.stateless_losses(model, trainable, non_trainable, images, True)[0]

    forward, gradient = jax.jit(loss), jax.jit(jax.grad(loss))
    gradients = gradient(trainable, non_trainable, batch)
    adam = jax.jit(model.optimizer.stateless_apply, donate_argnums=(0, 2))
    adam_state = [copies(model.optimizer.variables), copies(model.trainable_variables)]

    def adam_step():
        adam_state[1], adam_state[0] = adam(adam_state[0], gradients, adam_state[1])
        wait(adam_state)

    def fit():
        model.fit(images[: repeats * batch_size], batch_size=batch_size, epochs=1, verbose=0)

    def iterate():
        for _ in ArrayDataAdapter(images[: repeats * batch_size], batch_size=batch_size, shuffle=True).get_jax_iterator():
            pass

    def waited(function, *args):
        return lambda: wait(function(*args))

    return {
        "fit(), per step": milliseconds(fit, 1) / repeats,
        "compiled train step": milliseconds(step, repeats),
        "forward + losses": milliseconds(waited(forward, trainable, non_trainable, batch), repeats),
        "forward + backward": milliseconds(waited(gradient, trainable, non_trainable, batch), repeats),
        "Adam: optimizer.stateless_apply": milliseconds(adam_step, repeats),
        "data: Keras's array iterator, per batch": milliseconds(iterate, 1) / repeats,
    }


def transposed_copy_first(a, b):
    """aᵀ @ b with aᵀ written out as a row-major array before the product.

    Under XLA an optimization barrier keeps the transpose from being folded
    back into the product, so the product gets the untransposed layout its
    fast path takes; the copy is timed with it. NumPy makes the same copy.
    """
    if isinstance(a, np.ndarray):
        return np.ascontiguousarray(a.T) @ b
    return jax.lax.optimization_barrier(a.T) @ b


def matmul_parts(batch_size, repeats, hidden=512, pixels=784):
    """(name, XLA ms, NumPy ms) for the large Dense layers' products."""
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, pixels), dtype="float32")
    g = rng.random((batch_size, hidden), dtype="float32")
    w = rng.random((pixels, hidden), dtype="float32")
    products = [
        (f"x @ W ({batch_size}x{pixels} . {pixels}x{hidden}), forward", lambda a, b: a @ b, (x, w)),
        (f"xᵀ @ g ({pixels}x{batch_size} . {batch_size}x{hidden}), kernel gradient", lambda a, b: a.T @ b, (x, g)),
        ("xᵀ @ g, xᵀ copied to row-major first", transposed_copy_first, (x, g)),
    ]
    rows = []
    for name, product, arrays in products:
        compiled = jax.jit(product)
        device = [jax.numpy.asarray(a) for a in arrays]
        rows.append((
            name,
            milliseconds(lambda: compiled(*device).block_until_ready(), repeats),
            milliseconds(lambda: product(*arrays), repeats),
        ))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=100, help="calls (or batches) per timing")
    args = parser.parse_args()
    images = np.random.default_rng(0).random((args.repeats * args.batch_size, 28, 28, 1), dtype="float32")
    print(f"milliseconds per step, batch {args.batch_size}, JAX {jax.__version__} on {jax.default_backend()}\n")
    print("| part | XLA (keras_vae on jax) | NumPy |\n|---|---|---|")
    for name, ms in model_parts(images, args.batch_size, args.repeats).items():
        print(f"| {name} | {ms:.2f} | – |")
    for name, xla_ms, numpy_ms in matmul_parts(args.batch_size, args.repeats):
        print(f"| {name} | {xla_ms:.2f} | {numpy_ms:.2f} |")


if __name__ == "__main__":
    main()
