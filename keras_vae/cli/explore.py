"""Explore a saved model in the browser: `keras-vae explore MODEL.keras`.

Loads the model and its test split, computes the latent map and the test
images' -log p(x) once (cached in `explore/` beside the model), and serves
the page of `keras_vae/explore/` on 127.0.0.1 until Ctrl-C. See
docs/explore.md.
"""

import hashlib

import uvicorn

from keras_vae import data, engines, files
from keras_vae.cli import flags
from keras_vae.cli.parsers import LOOPBACK
from keras_vae.explore import explorer as views
from keras_vae.explore.cache import cached_arrays
from keras_vae.explore.server import create_app


def main(args, prog):
    """Serves the explorer of `args.model` on `args.socket` until Ctrl-C."""
    flags.announce_backend(prog, ", ".join(engines.list_devices()))
    model, images, labels, dataset, binarize, split, settings = flags.load_model_and_test_split(
        args, default_binarize="none"
    )
    binary = data.binary_pixels(dataset, binarize)
    key = {
        "model": files.sha256(args.model), "dataset": dataset, "binarize": binarize, "split": split,
        "data": settings.fingerprint or "", "image_size": settings.image_size or "", "channels": settings.channels or 0,
        "images": len(images), "labels": hashlib.sha256(labels.tobytes()).hexdigest(),
        "iw_samples": views.IW_SAMPLES, "test_images": views.TEST_IMAGES, "seed": 0,
    }

    def compute():
        test_images, test_labels = settings.load_split("test", args.data_dir, args.manual_dir, views.TEST_IMAGES)
        return {
            "z_means": views.posterior_means(model, images, labels),
            "test_nll": views.likelihoods_of(model, test_images, test_labels),
        }

    shapes = {"z_means": (len(images), model.code_dim), "test_nll": (views.TEST_IMAGES,)}
    arrays, where = cached_arrays(args.cache, key, compute, shapes)
    print(f"{prog}: latent map of {len(images)} {split} images and -log p(x) of {len(arrays['test_nll'])} test images {where}", flush=True)
    explorer = views.Explorer(model, images, labels, arrays["z_means"], arrays["test_nll"], binary)
    app = create_app(explorer, args.pretrained or str(args.model))
    host, port = args.socket.getsockname()[:2]
    if args.host not in LOOPBACK:
        print(f"{prog}: warning: listening on {args.host}: anyone who can reach this machine can use the app", flush=True)
    print(f"{prog}: open http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/  (Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[args.socket])
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again for its caller
        pass
    print(f"{prog}: stopped", flush=True)
    return 0
