"""`keras-vae explore`: the app's views give what the model and the evaluator give.

In-process on every backend (the views over a pretrained model and two
small ones: conditional, two stochastic layers); the web layer, the picture
reader and the cache once (`any_backend`). The real browser is
`test_explore_browser.py`.
"""

import base64
import importlib.util
import io
import socket
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_vae import UserError, VAE, cli, data, evaluation, latent_space, load_pretrained, pretrained
from keras_vae.explore import canvas
from keras_vae.pixels import as_unit
from keras_vae.explore.cache import cached_arrays
from keras_vae.explore.explorer import (
    IW_SAMPLES, MAX_SLIDERS, NEAREST, TEST_IMAGES, Explorer, posterior_means, likelihoods_of,
)

SMALL = {  # untrained: the views only need the model's functions
    "conditional-2d": dict(latent_dim=2, hidden_dim=32, num_classes=10, seed=3),
    "two-layer": dict(latent_dim=3, hidden_dim=32, latent_layers=2, prior="vamp", pseudo_inputs=5, seed=3),
}


def explorer_of(model, mnist_subset, binary=True):
    images, labels = mnist_subset.x_test[:300], mnist_subset.y_test[:300]
    z_means = posterior_means(model, images, labels)
    test_nll = likelihoods_of(model, (as_unit(images[:40]) > 0.5).astype("float32"), labels[:40])
    return Explorer(model, images, labels, z_means, test_nll, binary)


@pytest.fixture(scope="module", params=["mlp-dynamic", *SMALL])
def explorer(request, mnist_subset):
    if request.param in SMALL:
        model = VAE(**SMALL[request.param])
    else:
        model = load_pretrained(request.param)
    return explorer_of(model, mnist_subset)


def test_sliders_decode_their_code(explorer):
    model = explorer.model
    directions, offset = explorer.directions()
    assert len(directions) == min(model.code_dim, MAX_SLIDERS)
    assert explorer.principal == (model.code_dim > MAX_SLIDERS)
    values = np.linspace(-1.5, 2.0, len(directions))
    label = 3 if model.conditional else None
    z, image = explorer.decode(values, label=label)
    np.testing.assert_allclose(z, offset + values @ directions, rtol=1e-6, atol=1e-6)
    expected = model.decode(z[None], None if label is None else [label])[0]
    np.testing.assert_array_equal(image, expected)
    with pytest.raises(ValueError, match="finite"):
        explorer.decode([np.nan] * len(directions), label=label)
    with pytest.raises(ValueError, match=f"{len(directions)} finite"):
        explorer.decode([0.0], label=label)


def test_a_prior_sample_is_the_sliders_code(explorer):
    model = explorer.model
    label = 1 if model.conditional else None
    values, offset, image = explorer.prior_sample(7, label)
    sample = model.sample_prior(1, seed=7)
    z, again = explorer.decode(values, offset, label)
    np.testing.assert_allclose(z, sample[0], atol=1e-5)
    np.testing.assert_allclose(again, image, atol=1e-5)
    np.testing.assert_array_equal(image, model.decode(sample, None if label is None else [label])[0])


def test_a_map_point_decodes_and_finds_the_nearest_images(explorer):
    model = explorer.model
    label = 0 if model.conditional else None
    point = explorer.points[5]
    z, image, nearest = explorer.map_point(*point, label=label)
    assert nearest[0] == 5 or np.allclose(explorer.points[nearest[0]], point)
    distances = ((explorer.points - point) ** 2).sum(1)
    assert len(nearest) == NEAREST and (np.diff(distances[nearest]) >= 0).all()
    assert distances[nearest].max() <= np.sort(distances)[NEAREST - 1]
    if model.code_dim == 2:
        np.testing.assert_allclose(z, explorer.z_means[5], atol=1e-5)
    else:  # the point's place along the first two principal axes, at the center elsewhere
        assert explorer.point_names == ("PC 1", "PC 2")
        _, axes, _, _ = latent_space.latent_axes(explorer.z_means, count=2)
        np.testing.assert_allclose(np.abs(explorer.map_axes @ axes.T), np.eye(2), atol=1e-4)
        back, _ = latent_space.map_points(z[None], None, explorer.map_center, explorer.map_axes)
        np.testing.assert_allclose(back[0], point, atol=1e-4)
        np.testing.assert_allclose((z - explorer.map_center) @ explorer.map_axes.T, point, atol=1e-4)
    np.testing.assert_array_equal(image, model.decode(z[None], None if label is None else [label])[0])


def test_a_drawing_gets_the_evaluators_numbers(explorer, mnist_subset):
    model = explorer.model
    label = int(mnist_subset.y_test[0]) if model.conditional else None
    labels = None if label is None else np.array([label])
    result = explorer.drawing(mnist_subset.x_test[0], label)
    binary = (as_unit(mnist_subset.x_test[:1]) > 0.5).astype("float32")
    np.testing.assert_array_equal(result["input"], binary[0])
    mean, log_var = model.encode(binary, labels)
    np.testing.assert_allclose(result["mean"], mean[0], atol=1e-6)
    np.testing.assert_allclose(result["std"], np.exp(0.5 * log_var[0]), rtol=1e-5)
    np.testing.assert_allclose(result["reconstruction"], model.decode(mean, labels)[0], atol=1e-6)
    expected = evaluation.evaluate_likelihood(model, binary, labels, iw_samples=IW_SAMPLES, seed=0)
    assert result["nll"] == pytest.approx(expected["iw_nll"], rel=1e-6)
    assert result["bits_per_dim"] == pytest.approx(expected["bits_per_dim"], rel=1e-6)
    assert result["rank"] == pytest.approx((explorer.test_nll < result["nll"]).mean())


def test_paths_run_between_two_test_images(explorer):
    model = explorer.model
    linear, spherical = explorer.interpolate(3, 9, 6)
    label = int(explorer.labels[3]) if model.conditional else None  # the first image's class
    labels = None if label is None else [label, label]
    ends = model.decode(explorer.z_means[[3, 9]], labels)
    for strip in (linear, spherical):
        assert strip.shape == (6, *model.image_shape)
        np.testing.assert_allclose(strip[[0, -1]], ends, atol=1e-5)
    with pytest.raises(ValueError, match="not in 0..299"):
        explorer.interpolate(0, 300, 6)
    with pytest.raises(ValueError, match="steps"):
        explorer.interpolate(0, 1, 1)


def test_a_conditional_model_needs_a_label(mnist_subset):
    model = VAE(**SMALL["conditional-2d"])
    explorer = explorer_of(model, mnist_subset)
    with pytest.raises(ValueError, match="label in 0..9"):
        explorer.decode([0.0, 0.0])
    with pytest.raises(ValueError, match="label in 0..9"):
        explorer.drawing(mnist_subset.x_test[0], label=10)


@pytest.mark.slow
def test_the_test_numbers_are_the_pretrained_check():
    """The drawing's comparison: the first 200 test images at k = 100, seed
    0, as `pretrained.CHECK`: their mean is the model's recorded check."""
    assert (TEST_IMAGES, IW_SAMPLES) == (pretrained.CHECK["images"], pretrained.CHECK["iw_samples"])
    entry = pretrained.registry()["mlp-dynamic"]
    images, labels = data.load_split("mnist", "test", limit=TEST_IMAGES, binarization=entry["binarize"])
    nll = likelihoods_of(load_pretrained("mlp-dynamic"), images, labels)
    assert nll.shape == (TEST_IMAGES,)
    assert nll.mean() == pytest.approx(entry["check"]["iw_nll"], abs=0.01)


# The map's geometry, pictures from the browser, the cache: NumPy and files only.


@pytest.mark.any_backend
def test_spherical_paths_keep_the_norm_and_end_where_asked():
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=8), rng.normal(size=8)
    end *= np.linalg.norm(start) / np.linalg.norm(end)
    for spherical in (False, True):
        codes = latent_space.path(start, end, 9, spherical)
        np.testing.assert_allclose(codes[[0, -1]], [start, end], atol=1e-6)
    norms = np.linalg.norm(latent_space.path(start, end, 9, True), axis=1)
    np.testing.assert_allclose(norms, np.linalg.norm(start), rtol=1e-5)
    middle = latent_space.path(start, end, 3, False)[1]
    np.testing.assert_allclose(middle, (start + end) / 2, atol=1e-6)
    np.testing.assert_allclose(latent_space.path(start, 2 * start, 5, True), latent_space.path(start, 2 * start, 5))


@pytest.mark.any_backend
def test_latent_axes_are_the_dims_in_two_dimensions():
    rng = np.random.default_rng(0)
    _, axes, _, label = latent_space.latent_axes(rng.normal(size=(100, 2)))
    np.testing.assert_array_equal(axes, np.eye(2))
    assert "two latent dims" in label
    _, axes, _, label = latent_space.latent_axes(rng.normal(size=(100, 1)))
    np.testing.assert_array_equal(axes, np.eye(1))
    assert "the latent dim" in label
    _, axes, _, label = latent_space.latent_axes(rng.normal(size=(100, 5)) * [5, 1, 1, 1, 1])
    assert "principal components" in label
    assert abs(axes[0, 0]) > 0.9  # the direction of largest variance


@pytest.mark.any_backend
def test_latent_axes_give_as_many_directions_as_asked():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 20)) * np.linspace(3, 0.5, 20)
    center, axes, scales, label = latent_space.latent_axes(z, count=16)
    assert axes.shape == (16, 20) and label == "first 16 principal components of E[z|x]"
    np.testing.assert_allclose(axes @ axes.T, np.eye(16), atol=1e-8)
    assert (np.diff(scales) <= 1e-9).all()  # the largest spread first
    _, axes, _, label = latent_space.latent_axes(z[:, :5], count=16)
    assert np.array_equal(axes, np.eye(5)) and label == "the 5 latent dims of E[z|x]"
    points, names = latent_space.map_points(z[:, :1], np.arange(500) % 10)
    assert names[1] == "label (jittered)" and np.abs(points[:, 1] - np.arange(500) % 10).max() <= 0.3


def png_of(array, mode="L"):
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(array), mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.any_backend
def test_a_drawing_is_centred_like_mnist():
    picture = np.zeros((280, 280), dtype="uint8")
    picture[30:150, 200:230] = 255  # a stroke in the top right corner
    grey, inverted = canvas.read_picture(png_of(picture))
    assert not inverted and grey.shape == (280, 280)
    image = canvas.as_model_input(grey, 28, 28)
    assert image.shape == (28, 28) and image.max() > 0.9
    rows, cols = np.nonzero(image > 0.1)
    assert rows.max() - rows.min() + 1 <= 21  # the ink fits MNIST's 20-pixel box
    mass = image.sum()
    centre = [(image.sum(1) * np.arange(28)).sum() / mass, (image.sum(0) * np.arange(28)).sum() / mass]
    np.testing.assert_allclose(centre, [13.5, 13.5], atol=1.0)
    plain = canvas.as_model_input(grey, 28, 28, centre=False)
    assert plain[:, :14].max() < 0.1 < plain[:, 14:].max()  # only resized: the ink stays right


@pytest.mark.any_backend
def test_dark_ink_on_paper_and_transparent_canvases_are_read_as_white_on_black():
    paper = np.full((100, 80), 240, dtype="uint8")
    paper[20:80, 30:45] = 10
    grey, inverted = canvas.read_picture(png_of(paper))
    assert inverted and grey[50, 35] > 0.9 and grey[5, 5] < 0.1
    rgba = np.zeros((60, 60, 4), dtype="uint8")
    rgba[10:50, 25:35] = (0, 0, 0, 255)  # black strokes on a transparent canvas
    grey, _ = canvas.read_picture(png_of(rgba, "RGBA"))
    assert grey[30, 30] > 0.9 and grey[5, 5] < 0.1
    jpeg = io.BytesIO()
    Image.fromarray(paper).save(jpeg, format="JPEG")
    assert canvas.read_picture(jpeg.getvalue())[1]


@pytest.mark.any_backend
@pytest.mark.parametrize(
    "data, message",
    [
        (b"not a picture at all", "not a picture that can be read"),
        (png_of(np.zeros((50, 50))), "blank"),
        (b"\0" * (canvas.MAX_BYTES + 1), "at most"),
        (None, "declares more pixels"),  # a small PNG that declares a huge size
        ("tiff", "a TIFF file"),
    ],
    ids=["garbage", "blank", "too-many-bytes", "too-many-pixels", "tiff"],
)
def test_bad_pictures_are_one_line(data, message):
    if data is None:
        small = png_of(np.zeros((8, 8)))
        ihdr = (50_000).to_bytes(4, "big") * 2 + small[24:29]  # width, height, the rest as it was
        data = small[:16] + ihdr + zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big") + small[33:]
    elif data == "tiff":
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8), 255, dtype="uint8")).save(buffer, format="TIFF")
        data = buffer.getvalue()
    with pytest.raises(UserError, match=message):
        canvas.read_picture(data)


@pytest.mark.any_backend
def test_the_cache_is_read_for_its_key_only(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"z_means": np.arange(6.0).reshape(3, 2)}

    path = tmp_path / "explore" / "cache.npz"
    arrays, where = cached_arrays(path, {"model": "a"}, compute)
    assert "cached in" in where and len(calls) == 1
    again, where = cached_arrays(path, {"model": "a"}, compute)
    assert where.startswith("read from") and len(calls) == 1
    np.testing.assert_array_equal(again["z_means"], arrays["z_means"])
    cached_arrays(path, {"model": "b"}, compute)  # another model: computed again
    assert len(calls) == 2
    _, where = cached_arrays(path, {"model": "b"}, compute, {"z_means": (4, 2)})  # other shapes
    assert "cached in" in where and len(calls) == 3
    calls.pop()
    path.write_bytes(b"damaged")
    _, where = cached_arrays(path, {"model": "b"}, compute)
    assert len(calls) == 3 and "cached in" in where
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    _, where = cached_arrays(blocked / "cache.npz", {"model": "b"}, compute)
    assert "not cached" in where and len(calls) == 4


def data_url(data):
    return "data:image/png;base64," + base64.b64encode(data).decode()


# The web layer, once: every route's answer, and one line for every bad request.


@pytest.fixture(scope="module")
def app_client(mnist_subset):
    from fastapi.testclient import TestClient

    from keras_vae.explore.server import create_app

    explorer = explorer_of(VAE(**SMALL["conditional-2d"]), mnist_subset)
    with TestClient(create_app(explorer, "tiny"), raise_server_exceptions=False) as client:
        client.explorer = explorer
        yield client


def pixels_of(url):
    """The grey levels of a PNG data URL, at the model's size (the page's scale undone)."""
    from keras_vae.explore.server import SCALE

    assert url.startswith("data:image/png;base64,")
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))), dtype="float32")
    return picture[::SCALE, ::SCALE] / 255.0


@pytest.mark.any_backend
def test_the_page_and_what_it_is_told(app_client):
    page = app_client.get("/")
    assert page.status_code == 200 and '<canvas id="map"' in page.text and "/api/draw" in page.text
    info = app_client.get("/api/info").json()
    assert info["conditional"] and info["num_classes"] == 10 and info["code_dim"] == 2
    assert len(info["map"]["points"]) == len(info["map"]["labels"]) == 300
    assert info["sliders"]["names"] == ["z[0]", "z[1]"] and not info["sliders"]["principal"]
    assert len(info["test"]["nll"]) == 40 and info["test"]["iw_samples"] == IW_SAMPLES
    assert info["binary"] and info["likelihood"]  # binary pixels: -log p(x) is a likelihood


@pytest.mark.any_backend
def test_an_8_bit_colour_model_is_explored_as_a_likelihood():
    from keras_vae.explore.server import info

    images = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    labels = np.full(60, -1)
    model = VAE(latent_dim=2, hidden_dim=8, likelihood="logistic", image_shape=(8, 8, 3), seed=0)
    test_nll = likelihoods_of(model, images[:10], labels[:10])
    explorer = Explorer(model, images, labels, posterior_means(model, images, labels), test_nll, False)
    told = info(explorer, "colour")
    assert told["likelihood"] and not told["binary"] and told["image_shape"] == [8, 8, 3]
    drawn = explorer.drawing(np.full((8, 8), 0.5, dtype="float32"))  # grey, over the three channels
    assert drawn["input"].shape == (8, 8, 3) and np.isfinite(drawn["nll"]) and drawn["reconstruction"].shape == (8, 8, 3)
    bernoulli = VAE(latent_dim=2, hidden_dim=8, image_shape=(8, 8, 3), seed=0)
    grey = Explorer(bernoulli, images, labels, posterior_means(bernoulli, images, labels), test_nll, False)
    assert not info(grey, "grey")["likelihood"]  # the cross-entropy on grey levels


@pytest.mark.any_backend
def test_every_view_sends_the_models_pictures(app_client, mnist_subset):
    explorer = app_client.explorer
    reply = app_client.post("/api/decode", json={"values": [0.5, -1.0], "label": 4}).json()
    expected = explorer.model.decode(np.array([[0.5, -1.0]]), [4])[0, ..., 0]
    np.testing.assert_allclose(pixels_of(reply["image"]), np.round(expected * 255) / 255, atol=1e-6)
    reply = app_client.post("/api/prior", json={"seed": 3, "label": 4}).json()
    assert len(reply["values"]) == 2 and pixels_of(reply["image"]).shape == (28, 28)
    reply = app_client.post("/api/map", json={"x": 0.1, "y": -0.2, "label": 2}).json()
    assert len(reply["nearest"]) == NEAREST and pixels_of(reply["nearest_image"]).shape[1] > 28 * NEAREST
    picture = np.zeros((280, 280), dtype="uint8")
    picture[60:220, 130:150] = 255  # a "1"
    reply = app_client.post("/api/draw", json={"image": data_url(png_of(picture)), "label": 1}).json()
    assert set(reply) >= {"input", "reconstruction", "mean", "std", "nll", "bits_per_dim", "rank"}
    seen = pixels_of(reply["input"])
    assert seen.shape == (28, 28) and set(np.unique(seen)) <= {0.0, 1.0}  # binary pixels
    assert reply["nll"] > 0 and 0 <= reply["rank"] <= 1 and len(reply["std"]) == 2
    reply = app_client.post("/api/interpolate", json={"first": 0, "second": 1, "steps": 5}).json()
    assert pixels_of(reply["linear"]).shape[1] > 5 * 28 // 1 - 1


@pytest.mark.any_backend
@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/api/decode", {"values": [0.0], "label": 1}, 400, "2 finite numbers"),
        ("/api/decode", '{"values": [NaN, 0], "label": 1}', 400, "finite"),
        ("/api/decode", {"values": ["up", 0]}, 400, "values.0"),
        ("/api/decode", {"values": [0, 0]}, 400, "label in 0..9"),
        ("/api/prior", {"seed": -1}, 400, "seed"),
        ("/api/map", '{"x": 1e999, "y": 0, "label": 1}', 400, "finite"),
        ("/api/draw", {"image": "not base64 !", "label": 1}, 400, "not base64"),
        ("/api/draw", {"image": "data:image/png;base64," + base64.b64encode(b"GIF89a?").decode(), "label": 1}, 400, "not a picture"),
        ("/api/draw", {"image": "blank", "label": 1}, 400, "blank"),
        ("/api/interpolate", {"first": 0, "second": 300}, 400, "not in 0..299"),
        ("/api/interpolate", {"first": 0, "second": 1, "steps": 99}, 400, "steps"),
        ("/api/draw", "{", 400, "JSON"),
        ("/api/draw", {"image": "A" * (4 << 20)}, 413, "at most"),
    ],
)
def test_bad_requests_are_one_line_in_the_page(app_client, path, body, status, fragment):
    if body == {"image": "blank", "label": 1}:
        body = {"image": data_url(png_of(np.zeros((40, 40)))), "label": 1}
    if isinstance(body, str):
        reply = app_client.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        reply = app_client.post(path, json=body)
    assert reply.status_code == status, reply.text
    message = reply.json()["error"]
    assert fragment in message and "\n" not in message and "Traceback" not in message


@pytest.mark.any_backend
def test_a_failure_of_the_app_is_one_line_and_the_app_goes_on(app_client, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app_client.explorer, "prior_sample", broken)
    reply = app_client.post("/api/prior", json={"seed": 1, "label": 0})
    assert reply.status_code == 500
    assert reply.json() == {"error": "the app failed (RuntimeError); its console says why"}
    assert app_client.post("/api/decode", json={"values": [0, 0], "label": 0}).status_code == 200


# The command line: every mistake is one line and exit 2, before Keras loads a model.


def refusal(capsys, argv):
    try:
        status = cli.launch("explore", "keras-vae explore", argv)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return status, lines


@pytest.mark.any_backend
def test_explore_mistakes_are_one_line(capsys, monkeypatch, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cases = [
        (["--pretrained", "mlp-dynamic", "--port", str(port), "--no-cache"], f"cannot listen on 127.0.0.1:{port}"),
        (["--pretrained", "mlp-dynamic", "--port", "70000"], "a port is 0..65535"),
        (["--pretrained", "mlp-dynamic", "--host", "no.such.host.invalid", "--no-cache"], "cannot listen on no.such.host.invalid"),
        ([str(tmp_path / "nothing.keras")], "no such file"),
        (["--pretrained", "mlp-dynamic", "--cache-dir", __file__], "exists and is not a folder"),
    ]
    for argv, fragment in cases:
        status, lines = refusal(capsys, argv)
        assert status == 2 and len(lines) == 1 and fragment in lines[0], (argv, lines)
    busy.close()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    status, lines = refusal(capsys, ["--pretrained", "mlp-dynamic"])
    assert status == 2 and lines == ["keras-vae explore: error: explore needs fastapi: pip install -e '.[explore]'"]
