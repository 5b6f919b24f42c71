"""Benchmark: training speed and memory on images of three sizes, held as uint8.

    python benchmarks/data.py [--backends tensorflow,jax,torch] [--images 50000]
                              [--epochs 3] [--mnist-epochs 4] [--stream-epochs 3]
    python benchmarks/data.py --write-folder DIR [--images 5000]

Writes synthetic sets of `--images` images (28x28x1, 32x32x3, 64x64x3:
smooth random blobs, 8-bit) as `.npz` files in a temporary folder, and on each
backend, in a fresh process per measurement, reads one through
`--dataset npz:` (`keras_vae.data`, uint8 in memory) and trains the MLP VAE
with the discretized logistic for `--epochs` epochs. Reports images per
second (median of the epochs after the first), the peak resident memory of
the process, and the uint8 size of the training images beside it.

Then the cost of holding uint8: the original model (784-512-20, Bernoulli on
grey levels) trained on MNIST's 60 000 images as `train.py` feeds them (uint8
in memory, converted per batch in the model, batches in the run's own order:
`keras_vae.run.inputs`) against a float32 array through Keras's own
shuffling (the pipeline before), each for `--mnist-epochs` epochs,
interleaved twice. The uint8 path must cost at most 10% speed.

Then streaming (`--stream on`, `keras_vae.data.stream`) against holding the
images: `--images` synthetic 32x32x3 images written as PNG files into a
folder, read through `--dataset folder:` and trained on for `--stream-epochs`
epochs each way (the default block: 64 MiB of images), with images/s and peak
memory. Writes benchmarks/DATA.md.
"""

import argparse
import datetime
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from keras_vae import data

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKENDS = ("tensorflow", "jax", "torch")
SHAPES = ((28, 28, 1), (32, 32, 3), (64, 64, 3))

WORKER = """
import json, resource, sys, time
import numpy as np
import keras_vae
keras_vae.start()
import keras
from keras_vae import data
from keras_vae.model import VAE
from keras_vae.pixels import as_unit

from keras_vae.data.stream import ShuffledArrays, ShuffledBlocks
from keras_vae.run.inputs import EpochBatches

source, epochs, pixels = sys.argv[1], int(sys.argv[2]), sys.argv[3]
streamed = pixels == "streamed"
dataset = data.load_dataset(source, stream="on" if streamed else "off")
settings = {} if source == "mnist" else dict(likelihood="logistic", image_shape=dataset.image_shape)
x = as_unit(dataset.x_train) if pixels == "float32" else dataset.x_train
if streamed:  # as train.py --stream on
    fed = EpochBatches(ShuffledBlocks(x, 128))
elif pixels == "uint8":  # as train.py: uint8 in memory, in the run's own order
    fed = EpochBatches(ShuffledArrays(x, dataset.y_train, 128))
else:  # float32 arrays through Keras's own shuffle (the pipeline before)
    fed = x
keras.utils.set_random_seed(0)
model = VAE(**settings)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
times = []

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.start)

options = dict(batch_size=128, shuffle=True) if fed is x else dict(shuffle=False)
model.fit(fed, epochs=epochs, verbose=0, callbacks=[Timer()], **options)
held = min(fed.order.block, len(x)) * int(np.prod(x.shape[1:])) if streamed else x.nbytes
print(json.dumps({
    "epoch_seconds": times, "images": len(x), "array_bytes": int(held),
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--images", type=int, default=50_000, help="images in each synthetic set")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per synthetic set, the first a warm-up")
    parser.add_argument("--mnist-epochs", type=int, default=4, help="epochs of the uint8/float32 comparison (0: skip)")
    parser.add_argument("--stream-epochs", type=int, default=3, help="epochs of the streamed/in-memory comparison (0: skip)")
    parser.add_argument("--output", default=str(HERE / "DATA.md"))
    parser.add_argument("--write-folder", default=None, metavar="DIR", help="instead: write --images synthetic 32x32 colour images as PNG files into DIR (a folder to try --dataset folder: on), and stop")
    return parser.parse_args(argv)


def write_folder(folder, count):
    """`count` synthetic 32x32 colour images as PNG files in `folder`."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, picture in enumerate(synthetic((32, 32, 3), count)):
        Image.fromarray(picture).save(folder / f"{index:05d}.png")
    print(f"wrote {count} images to {folder}")


def synthetic(shape, count, seed=0):
    """`count` 8-bit images of `shape`: a few soft blobs of random colours each."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    yy, xx = np.mgrid[:height, :width] / max(height, width)
    images = np.zeros((count, height, width, channels), dtype="uint8")
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        centres = rng.random((n, 3, 2))
        radii = rng.uniform(0.05, 0.3, (n, 3))
        colours = rng.uniform(0.3, 1.0, (n, 3, channels))
        picture = np.zeros((n, height, width, channels))
        for blob in range(3):
            distance = (yy - centres[:, blob, 0, None, None]) ** 2 + (xx - centres[:, blob, 1, None, None]) ** 2
            weight = np.exp(-distance / (2 * radii[:, blob, None, None] ** 2))
            picture += weight[..., None] * colours[:, blob, None, None, :]
        images[start : start + n] = np.round(np.clip(picture, 0, 1) * 255)
    return images


def measure(backend, source, epochs, pixels="uint8"):
    """One training process: its epoch times, array size and peak memory."""
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(source), str(epochs), pixels],
        capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ, "KERAS_BACKEND": backend},
        timeout=3600,
    )
    if result.returncode:
        raise RuntimeError(f"{backend} {source}: {result.stderr[-2000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    timed = found["epoch_seconds"][1:] or found["epoch_seconds"]
    found["images_per_second"] = found["images"] / statistics.median(timed)
    return found


def mib(nbytes):
    return f"{nbytes / 2**20:,.0f}"


def main(argv=None):
    args = parse_args(argv)
    if args.write_folder:
        return write_folder(args.write_folder, args.images)
    backends = args.backends.split(",")
    rows, comparison = [], []
    with tempfile.TemporaryDirectory() as folder:
        for shape in SHAPES:
            path = Path(folder) / ("x".join(map(str, shape)) + ".npz")
            images = synthetic(shape, args.images + 1000)
            np.savez(path, x_train=images[: args.images], x_test=images[args.images :])
            for backend in backends:
                found = measure(backend, f"npz:{path}", args.epochs)
                rows.append((shape, backend, found))
                print(shape, backend, round(found["images_per_second"]), mib(found["peak_rss"]), flush=True)
    for _ in range(2 if args.mnist_epochs else 0):  # interleaved: a slow spell hits both
        for backend in backends:
            for pixels in ("uint8", "float32"):
                found = measure(backend, "mnist", args.mnist_epochs, pixels)
                comparison.append((backend, pixels, found))
                print("mnist", backend, pixels, round(found["images_per_second"]), flush=True)
    streaming = measure_streaming(args, backends) if args.stream_epochs else []
    Path(args.output).write_text(report(args, rows, comparison) + streaming_report(args, streaming))
    print(f"wrote {args.output}")


def measure_streaming(args, backends):
    """Each backend on a folder of PNGs, held in memory and streamed."""
    found = []
    with tempfile.TemporaryDirectory() as folder:
        write_folder(folder, math.ceil(args.images / (1 - data.DEFAULT_TEST_SPLIT)))  # less the test split
        for backend in backends:
            for mode in ("uint8", "streamed"):
                found.append((backend, mode, measure(backend, f"folder:{folder}", args.stream_epochs, mode)))
                print("folder", backend, mode, round(found[-1][2]["images_per_second"]), flush=True)
    return found


def streaming_report(args, found):
    if not found:
        return ""
    images = found[0][2]["images"]
    lines = [
        "",
        f"Streaming: {images:,} synthetic 32x32x3 training images as PNG files in a folder (`--dataset folder:`), "
        f"held in memory as uint8 against streamed from disk (`--stream on`, the default block of 64 MiB), "
        f"{args.stream_epochs} epochs each; held is the uint8 training array, or one block:",
        "",
        "| backend | in memory images/s | streamed images/s | streamed / in memory | held in memory (MiB) | held streaming (MiB) | peak RSS in memory (MiB) | peak RSS streaming (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in dict.fromkeys(b for b, _, _ in found):
        held, streamed = (next(f for b, m, f in found if b == backend and m == mode) for mode in ("uint8", "streamed"))
        lines.append(
            f"| {backend} | {held['images_per_second']:,.0f} | {streamed['images_per_second']:,.0f} | "
            f"{streamed['images_per_second'] / held['images_per_second']:.2f} | {mib(held['array_bytes'])} | "
            f"{mib(streamed['array_bytes'])} | {mib(held['peak_rss'])} | {mib(streamed['peak_rss'])} |"
        )
    return "\n".join(lines) + "\n"


def report(args, rows, comparison):
    lines = [
        "# Data: speed and memory by image size, uint8 in memory",
        "",
        f"`python benchmarks/data.py --backends {args.backends} --images {args.images} --epochs {args.epochs} "
        f"--mnist-epochs {args.mnist_epochs} --stream-epochs {args.stream_epochs}`, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} CPU cores. MLP VAE (512 hidden, z of 20, discretized logistic), batch 128; "
        "images/s is the median of the epochs after the first; peak RSS is the whole process's "
        "(Python, the engine, the model and the data).",
        "",
        "| images | backend | uint8 training set (MiB) | images/s | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for shape, backend, found in rows:
        lines.append(
            f"| {args.images:,} x {'x'.join(map(str, shape))} | {backend} | {mib(found['array_bytes'])} | "
            f"{found['images_per_second']:,.0f} | {mib(found['peak_rss'])} |"
        )
    if comparison:
        lines += [
            "",
            "MNIST, the original model: its 60 000 training images as train.py feeds them (uint8 in memory, "
            "converted per batch in the model, in the run's own order) against a float32 array through "
            "Keras's shuffle (the pipeline before), two interleaved rounds, "
            f"{args.mnist_epochs} epochs each:",
            "",
            "| backend | uint8 images/s | float32 images/s | uint8 / float32 | uint8 array (MiB) | float32 array (MiB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for backend in dict.fromkeys(b for b, _, _ in comparison):
            speed = {p: statistics.median(f["images_per_second"] for b, q, f in comparison if b == backend and q == p) for p in ("uint8", "float32")}
            size = {p: next(f["array_bytes"] for b, q, f in comparison if b == backend and q == p) for p in ("uint8", "float32")}
            lines.append(
                f"| {backend} | {speed['uint8']:,.0f} | {speed['float32']:,.0f} | {speed['uint8'] / speed['float32']:.2f} | "
                f"{mib(size['uint8'])} | {mib(size['float32'])} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
