"""How fast `keras-vae explore` answers: start-up and each view, per model.

Drives the app's functions in-process as the page calls them (the FastAPI
routes through its test client, so JSON and PNG encoding are counted; the
browser's own time is not) and writes a Markdown table:

    python benchmarks/explore.py     # mlp-dynamic and resnet-iwae, every backend

writes benchmarks/EXPLORE.md (`--output -`: the terminal only). Each backend
runs in its own process (`--backends`).

Start-up is measured after Keras is imported: loading the model and the test
split, and the latent map and test numbers computed (first start) or read
from the cache (a later one), and the app built. Each view's time is the
median of `--repeats` requests after one warm-up.
"""

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone too

import keras_vae  # noqa: E402

keras_vae.start()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from keras_vae import data, files, load_pretrained, pretrained  # noqa: E402
from keras_vae.explore import explorer as views  # noqa: E402
from keras_vae.explore.cache import cached_arrays  # noqa: E402
from keras_vae.explore.server import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def start_app(name, cache):
    """The app of pretrained model `name` as `keras-vae explore` builds it; seconds."""
    begin = time.perf_counter()
    entry = pretrained.registry()[name]
    model = load_pretrained(name)
    images, labels = data.load_split(entry["dataset"], "test", binarization=entry["binarize"])
    key = {"model": files.sha256(pretrained.model_path(name)), "benchmark": True}

    def compute():
        test_images, test_labels = data.load_split(
            entry["dataset"], "test", limit=views.TEST_IMAGES, binarization=entry["binarize"]
        )
        return {
            "z_means": views.posterior_means(model, images, labels),
            "test_nll": views.likelihoods_of(model, test_images, test_labels),
        }

    arrays, _ = cached_arrays(cache, key, compute)
    explorer = views.Explorer(
        model, images, labels, arrays["z_means"], arrays["test_nll"],
        data.binary_pixels(entry["dataset"], entry["binarize"]),
    )
    return create_app(explorer, name), time.perf_counter() - begin


def drawing():
    picture = np.zeros((280, 280), dtype="uint8")
    picture[50:230, 125:155] = 255
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def requests(info):
    """The page's requests: (view, path, body)."""
    sliders = len(info["sliders"]["names"])
    return [
        ("sliders", "/api/decode", {"values": [0.5] * sliders, "offset": info["sliders"]["offset"]}),
        ("prior sample", "/api/prior", {"seed": 1}),
        ("map click", "/api/map", {"x": 0.5, "y": -0.5}),
        ("draw (k = 100)", "/api/draw", {"image": drawing()}),
        ("interpolate (10 steps)", "/api/interpolate", {"first": 0, "second": 1, "steps": 10}),
    ]


def milliseconds(client, path, body, repeats):
    client.post(path, json=body).raise_for_status()  # warm-up: compiled functions
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        client.post(path, json=body).raise_for_status()
        times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def measure(name, repeats):
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "cache.npz"
        _, first = start_app(name, cache)
        app, later = start_app(name, cache)
    row = {"model": name, "first start": first, "later start": later}
    with TestClient(app) as client:
        info = client.get("/api/info").json()
        for view, path, body in requests(info):
            row[view] = milliseconds(client, path, body, repeats)
    return row


def table(rows):
    views = [key for key in rows[0] if key not in ("backend", "model", "first start", "later start")]
    lines = [
        f"Keras {keras.__version__}, {os.cpu_count()} CPU cores; start-up in seconds after Keras "
        "is imported, each view in ms (median); `python benchmarks/explore.py`.",
        "",
        "| backend | model | first start (s) | later start (s) | " + " | ".join(f"{view} (ms)" for view in views) + " |",
        "|---|---|---|---|" + "---|" * len(views),
    ]
    for row in rows:
        cells = [f"{row[view]:.0f}" for view in views]
        lines.append(
            f"| {row['backend']} | {row['model']} | {row['first start']:.1f} | {row['later start']:.1f} | "
            + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def measure_on(backend, args):
    """The rows of `backend`, measured in a process of its own."""
    command = [sys.executable, __file__, "--worker", "--models", args.models, "--repeats", str(args.repeats)]
    result = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{backend}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp-dynamic,resnet-iwae", help="pretrained models, comma-separated")
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="backends, comma-separated")
    parser.add_argument("--repeats", type=int, default=20, help="requests per view")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "EXPLORE.md"), help="the table's file, or - for the terminal only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one backend: its rows as JSON
        rows = [{"backend": keras.backend.backend(), **measure(name, args.repeats)} for name in args.models.split(",")]
        print(json.dumps(rows))
        return
    text = table([row for backend in args.backends.split(",") for row in measure_on(backend, args)])
    print(text, end="")
    if args.output != "-":
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
