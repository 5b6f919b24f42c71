"""The explorer's web app: a FastAPI app over an `Explorer`.

One page (`page.html`, plain HTML and JavaScript) and a small JSON API;
every picture travels as a PNG data URL. A request the app cannot take (a
bad number, a picture that is not one, a body over `MAX_REQUEST_BYTES`) is
answered with status 4xx and `{"error": "one line"}`, which the page shows;
a failure of the app itself with 500 and one line, its traceback only on
the server's console. The model runs one request at a time (a lock): Keras
models are not meant to be called from several threads at once.
"""

import base64
import binascii
import logging
import threading
from importlib import resources

import keras
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from keras_vae import images
from keras_vae.model.config import is_likelihood
from keras_vae.errors import UserError
from keras_vae.explore import canvas
from keras_vae.explore.explorer import IW_SAMPLES, MAX_SLIDERS, MAX_STEPS

#: The largest request body taken: a picture of `canvas.MAX_BYTES` in base64, and JSON.
MAX_REQUEST_BYTES = canvas.MAX_BYTES * 4 // 3 + (64 << 10)
#: Larger than the model's images on the page: PNGs are sent at this scale.
SCALE = 4

_log = logging.getLogger("keras_vae.explore")


class Sliders(BaseModel):
    values: list[float] = Field(max_length=MAX_SLIDERS)
    offset: list[float] | None = Field(default=None, max_length=4096)
    label: int | None = None


class PriorSample(BaseModel):
    seed: int = Field(ge=0, le=2**32 - 1)
    label: int | None = None


class MapPoint(BaseModel):
    x: float
    y: float
    label: int | None = None


class Drawing(BaseModel):
    image: str = Field(max_length=MAX_REQUEST_BYTES)  # a data URL or base64
    label: int | None = None
    centre: bool = True


class Interpolation(BaseModel):
    first: int
    second: int
    steps: int = Field(default=10, ge=2, le=MAX_STEPS)
    label: int | None = None


def png(pictures):
    """Images `(n, H, W, C)` in a row (or one image) as a PNG data URL, `SCALE` times larger."""
    pictures = np.asarray(pictures)
    if pictures.ndim == 3:
        pictures = pictures[None]
    data = images.png_bytes(pictures, rows=1, scale=SCALE, pad=0 if len(pictures) == 1 else 1)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _rounded(array, places=4):
    return np.round(np.asarray(array, dtype="float64"), places).tolist()


def picture_bytes(text):
    """The bytes of a picture sent as a data URL (or bare base64)."""
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UserError("the picture is not base64 data") from error


def info(explorer, title):
    """What the page needs to draw itself: the model, the map, the sliders."""
    model = explorer.model
    directions, offset = explorer.directions()
    names = (
        [f"PC {i + 1}" for i in range(len(directions))]
        if explorer.principal
        else [f"z[{i}]" for i in range(len(directions))]
    )
    return {
        "title": title,
        "backend": keras.backend.backend(),
        "image_shape": list(model.image_shape),
        "code_dim": model.code_dim,
        "conditional": model.conditional,
        "num_classes": model.num_classes if model.conditional else 0,
        "binary": explorer.binary,
        # Whether -log p(x) is a likelihood (binary pixels, or an 8-bit likelihood).
        "likelihood": is_likelihood(model.likelihood, explorer.binary),
        "sliders": {"names": names, "offset": _rounded(offset, 6), "principal": explorer.principal},
        "map": {
            "points": _rounded(explorer.points, 3),
            "labels": explorer.labels.astype(int).tolist(),
            "names": list(explorer.point_names),
            "about": explorer.map_label,
        },
        "test": {
            "nll": _rounded(explorer.test_nll, 3),
            "iw_samples": IW_SAMPLES,
            "images": len(explorer.images),
        },
    }


def create_app(explorer, title):
    """The FastAPI app serving `explorer` under the page title `title`."""
    app = FastAPI(title=f"keras-vae explore: {title}", docs_url=None, redoc_url=None, openapi_url=None)
    _answer_errors(app)
    page = resources.files("keras_vae.explore").joinpath("page.html").read_text(encoding="utf-8")
    summary = info(explorer, title)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/api/info")
    def get_info():
        return summary

    _add_views(app, explorer)
    return app


def _answer_errors(app):
    """Every refusal and failure as `{"error": "one line"}` with its status."""

    @app.middleware("http")
    async def limit_size(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "a request without a Content-Length is not taken")
            if int(length) > MAX_REQUEST_BYTES:
                return _error(413, f"the request is {int(length):,} bytes; at most {MAX_REQUEST_BYTES:,} are taken")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, error):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "the request"
        return _error(400, f"{where}: {first.get('msg', 'not valid')}")

    @app.exception_handler(UserError)
    async def user_error(request, error):
        return _error(400, str(error))

    @app.exception_handler(ValueError)
    async def value_error(request, error):
        return _error(400, str(error))

    @app.exception_handler(Exception)
    async def failure(request, error):
        _log.exception("explore: %s failed", request.url.path)
        return _error(500, f"the app failed ({type(error).__name__}); its console says why")


def _add_views(app, explorer):
    """The views' routes; the model answers one request at a time."""
    lock = threading.Lock()

    @app.post("/api/decode")
    def decode(request: Sliders):
        with lock:
            z, image = explorer.decode(request.values, request.offset, request.label)
        return {"z": _rounded(z), "image": png(image)}

    @app.post("/api/prior")
    def prior(request: PriorSample):
        with lock:
            values, offset, image = explorer.prior_sample(request.seed, request.label)
        return {"values": _rounded(values), "offset": _rounded(offset, 6), "image": png(image)}

    @app.post("/api/map")
    def map_point(request: MapPoint):
        with lock:
            z, image, nearest = explorer.map_point(request.x, request.y, request.label)
        return {
            "z": _rounded(z),
            "image": png(image),
            "nearest": nearest.tolist(),
            "nearest_image": png(explorer.images[nearest]),
        }

    @app.post("/api/draw")
    def draw(request: Drawing):
        grey, inverted = canvas.read_picture(picture_bytes(request.image))
        height, width, _ = explorer.model.image_shape
        image = canvas.as_model_input(grey, height, width, centre=request.centre)
        with lock:
            result = explorer.drawing(image[..., None], request.label)
        return {
            "input": png(result["input"]),
            "reconstruction": png(result["reconstruction"]),
            "mean": _rounded(result["mean"]),
            "std": _rounded(result["std"]),
            "nll": result["nll"],
            "bits_per_dim": result["bits_per_dim"],
            "rank": result["rank"],
            "inverted": inverted,
        }

    @app.post("/api/interpolate")
    def interpolate(request: Interpolation):
        with lock:
            linear, spherical = explorer.interpolate(request.first, request.second, request.steps, request.label)
        ends = explorer.images[[request.first, request.second]]
        return {"linear": png(linear), "spherical": png(spherical), "ends": png(ends)}


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)
