"""Times keras_vae under the backend of KERAS_BACKEND, in its own process.

Run by benchmarks/run.py; prints one JSON line. Measures training epochs
(the first is the warm-up, which includes compiling the step), the time the
training callbacks take per epoch, and the importance-weighted evaluation.
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_vae import VAE, engines, evaluation
from keras_vae.run import callbacks
from memory import peak_rss_mb, rss_mb


def parse_jit(text):
    return {"auto": "auto", "true": True, "false": False}[text]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data", help=".npz with x_train, x_test, y_test")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit-compile", type=parse_jit, default="auto")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--iwae-images", type=int, default=0)
    parser.add_argument("--iwae-samples", type=int, default=5000)
    parser.add_argument("--callback-dir", required=True)
    parser.add_argument("--devices", default="1", help="data parallel over N devices (torch: under torchrun)")
    args = parser.parse_args()
    topology = engines.setup(args.devices)  # before the backend runs anything

    arrays = np.load(args.data)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    keras.utils.set_random_seed(0)
    with topology.scope():
        model = VAE()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            jit_compile=args.jit_compile,
            steps_per_execution=args.steps_per_execution,
        )
    memory = []

    class Memory(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            memory.append(rss_mb())

    timer = callbacks.EpochTimer()
    joined = topology.callbacks()
    with topology.scope():
        history = model.fit(
            topology.shard(x_train), epochs=args.epochs,
            batch_size=topology.check_batch_size(args.batch_size),
            verbose=0, callbacks=[timer, Memory(), *joined],
        ).history
    topology.finish()
    result = {
        "epoch_seconds": history["seconds"],
        "losses": history["loss"],
        "rss_mb": memory,
        "peak_rss_mb": peak_rss_mb(),
        "devices": topology.devices,
    }
    if not topology.chief:
        return
    if topology.parallel:  # the rest is measured on one device
        print(json.dumps(result))
        return

    # The per-epoch work of train.py's callbacks, timed on the trained model.
    writers = [
        callbacks.SampleGrid(model.sample_prior(64), f"{args.callback_dir}/samples"),
        callbacks.ReconstructionGrid(x_test[:10], f"{args.callback_dir}/reconstructions"),
        callbacks.HistoryCSV(f"{args.callback_dir}/history.csv"),
        callbacks.BestModelCheckpoint(f"{args.callback_dir}/best.keras"),
    ]
    for writer in writers:
        writer.set_model(model)
    logs = {"loss": 100.0, "val_loss": 100.0}
    for writer in writers:  # warm up (compiles predict functions)
        writer.on_epoch_end(0, dict(logs))
    start = time.perf_counter()
    for epoch in range(1, 4):
        for writer in writers:
            writer.on_epoch_end(epoch, {"loss": 100.0, "val_loss": 100.0 - epoch})
    result["callback_seconds_per_epoch"] = (time.perf_counter() - start) / 3

    start = time.perf_counter()
    model.evaluate(x_test, batch_size=args.batch_size, verbose=0)
    result["validation_seconds"] = time.perf_counter() - start

    if args.iwae_images:
        images = (x_test[: args.iwae_images] > 0.5).astype("float32")
        evaluation.evaluate_likelihood(model, images[:4], iw_samples=args.iwae_samples)  # compile both batch shapes
        start = time.perf_counter()
        evaluation.evaluate_likelihood(model, images, iw_samples=args.iwae_samples)
        result["iwae_seconds"] = time.perf_counter() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
