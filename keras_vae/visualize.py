"""The pictures of a trained model and of its training run.

Each function writes one PNG (or GIF) atomically and returns its path:

- `latent_scatter`: test posterior means coloured by label (the two latent
  dims when latent_dim = 2, else the first two principal components);
- `latent_manifold`: images decoded on a grid of Gaussian quantiles over two
  latent axes (the two dims, or the two principal axes);
- `interpolation`: rows decoded between the posterior means of pairs of
  test images;
- `reconstructions`: test images above their reconstructions;
- `training_curves`: train and validation loss, reconstruction and KL;
- `samples_gif`: the per-epoch sample grids of a run, animated.

`make_figures` writes them all. Figures use matplotlib's object-oriented API
(no pyplot state), so they render headless.
"""

import statistics
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from keras_vae import images as grids
from keras_vae import pixels
from keras_vae.files import atomic_path
from keras_vae.latent_space import latent_axes, map_points
from keras_vae.run.folder import RunFolder, read_history


def _save(figure, path):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight")
    return Path(path)


def _conditioning(model, labels):
    """The labels a conditional VAE needs, None for an unconditional one."""
    return np.asarray(labels) if model.conditional else None


def latent_scatter(model, images, labels, path):
    """Scatter of the test set in latent space, coloured by label."""
    z_mean, _ = model.encode(images, _conditioning(model, labels))
    label = latent_axes(z_mean)[3]
    points, names = map_points(z_mean, labels)
    figure = Figure(figsize=(7, 6), layout="constrained")
    ax = figure.subplots()
    if (labels >= 0).any():
        artist = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
        figure.colorbar(artist, ax=ax, ticks=range(10), label="digit")
    else:
        ax.scatter(points[:, 0], points[:, 1], s=2)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"Test set in latent space: {label} (latent_dim={z_mean.shape[1]})")
    return _save(figure, path)


def _normal_quantiles(count, low=0.05, high=0.95):
    return np.array([statistics.NormalDist().inv_cdf(p) for p in np.linspace(low, high, count)])


def latent_manifold(model, images, path, count=15, labels=None, digit=0):
    """Decoded images on a `count` x `count` grid of Gaussian quantiles.

    A conditional VAE encodes `images` with their `labels` and decodes the
    grid as class `digit`, so the grid shows the styles that z encodes.
    """
    condition = _conditioning(model, labels)
    z_mean, _ = model.encode(images, condition)
    center, axes, scales, label = latent_axes(z_mean)
    if z_mean.shape[1] <= 2:  # the prior's own quantiles
        center, scales = np.zeros(len(axes)), np.ones(len(axes))
    quantiles = _normal_quantiles(count)
    second = quantiles[::-1] if len(axes) == 2 else [0.0]  # top row: high values
    rows = []
    for q1 in second:
        for q0 in quantiles:
            point = center + q0 * scales[0] * axes[0]
            if len(axes) == 2:
                point = point + q1 * scales[1] * axes[1]
            rows.append(point)
    decoded = model.decode(
        np.array(rows, dtype="float32"), None if condition is None else digit
    )
    grid = grids.tile(decoded, len(second), count, pad=0)
    figure = Figure(figsize=(8, 8 if len(axes) == 2 else 1.6), layout="constrained")
    ax = figure.subplots()
    size = decoded.shape[1]
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ticks = np.arange(count) * size + size / 2
    ax.set_xticks(ticks, [f"{q:.1f}" for q in quantiles], fontsize=7)
    axis_names = ("z[0]", "z[1]") if z_mean.shape[1] <= 2 else ("PC 1", "PC 2")
    unit = "" if z_mean.shape[1] <= 2 else " (data std units)"
    ax.set_xlabel(f"{axis_names[0]}: Gaussian quantile{unit}")
    if len(axes) == 2:
        ax.set_yticks(ticks, [f"{q:.1f}" for q in second], fontsize=7)
        ax.set_ylabel(f"{axis_names[1]}: Gaussian quantile{unit}")
    else:
        ax.set_yticks([])
    if z_mean.shape[1] == 1:
        ax.set_title("Decoded z[0] at quantiles of the prior N(0, 1)")
    elif z_mean.shape[1] == 2:
        ax.set_title("Decoded grid over z[0], z[1] at quantiles of the prior N(0, 1)")
    else:
        ax.set_title(f"Decoded grid over the {label}, at Gaussian quantiles of their spread")
    if condition is not None:
        ax.set_title(f"{ax.get_title()}; decoded as class {digit}", fontsize=9)
    return _save(figure, path)


def interpolation(model, images, path, pairs=8, steps=10, seed=0, labels=None):
    """Rows of images decoded between the posterior means of image pairs.

    A conditional VAE decodes each row as the class of its first image.
    """
    rng = np.random.default_rng(seed)
    pairs = min(pairs, len(images) // 2)  # a small test split has fewer
    chosen = rng.choice(len(images), size=(pairs, 2), replace=False)
    condition = _conditioning(model, labels)
    z_mean, _ = model.encode(
        images[chosen.ravel()], None if condition is None else condition[chosen.ravel()]
    )
    z_mean = z_mean.reshape(pairs, 2, -1)
    weights = np.linspace(0.0, 1.0, steps)[None, :, None]
    path_z = (1 - weights) * z_mean[:, :1] + weights * z_mean[:, 1:]
    row_labels = None if condition is None else np.repeat(condition[chosen[:, 0]], steps)
    decoded = model.decode(path_z.reshape(pairs * steps, -1).astype("float32"), row_labels)
    decoded = decoded.reshape(pairs, steps, *decoded.shape[1:])
    originals = pixels.as_unit(images[chosen])  # (pairs, 2, ...)
    rows = np.concatenate([originals[:, :1], decoded, originals[:, 1:]], axis=1)
    grid = grids.tile(rows.reshape(-1, *rows.shape[2:]), pairs, steps + 2)
    figure = Figure(figsize=(10, 0.9 * pairs + 0.8), layout="constrained")
    ax = figure.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    title = "Interpolation between test images: original, decoded path of E[z|x], original"
    if condition is not None:
        title += "\n(conditional VAE: each row decoded as the digit of its left image)"
    ax.set_title(title)
    return _save(figure, path)


def reconstructions(model, images, path, count=10, labels=None):
    """The first `count` images above their reconstructions."""
    originals = pixels.as_unit(images[:count])
    condition = _conditioning(model, labels)
    rebuilt = model.reconstruct(originals, None if condition is None else condition[:count])
    grid = grids.tile(np.concatenate([originals, rebuilt]), 2, count)
    figure = Figure(figsize=(10, 2.6), layout="constrained")
    ax = figure.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("Test images (top) and their reconstructions from E[z|x] (bottom)")
    return _save(figure, path)


def training_curves(history_csv, path):
    """Train and validation curves of loss, reconstruction and KL per epoch."""
    rows = read_history(history_csv)
    if not rows:
        raise ValueError(f"{history_csv} holds no epochs")
    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    for ax, (key, title) in zip(
        figure.subplots(1, 3),
        [("loss", "Loss (the objective)"), ("reconstruction_loss", "Reconstruction"), ("kl_loss", "KL divergence")],
    ):
        shown = []
        series = [(prefix + key, name) for prefix, name in (("", "train"), ("val_", "validation"))]
        if key == "loss" and not np.allclose(
            [r.get("neg_elbo", r["loss"]) for r in rows], [r["loss"] for r in rows], rtol=1e-5
        ):
            # Another objective than the ELBO: show the negative ELBO too.
            series += [("neg_elbo", "train -ELBO"), ("val_neg_elbo", "validation -ELBO")]
        for column, name in series:
            values = [row.get(column, np.nan) for row in rows]
            style = "--" if "ELBO" in name else "-"
            ax.plot(epochs, values, style, label=name, marker="." if len(rows) < 30 else None)
            shown += values[len(values) // 20 :]  # long runs: skip the first 5%
        if len(rows) > 10 and np.isfinite(shown).any():
            low, high = np.nanmin(shown), np.nanmax(shown)
            ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle("Training curves")
    return _save(figure, path)


def samples_gif(samples_dir, path, milliseconds=300, max_frames=25, scale=1.0):
    """Animates a run's per-epoch sample grids, labelled with the epoch.

    Args:
        samples_dir: folder of `epoch_NNN.png` grids (`callbacks.SampleGrid`).
        path: the `.gif` to write.
        milliseconds: display time of each frame.
        max_frames: at most this many epochs, evenly spaced, first and last
            included, so long runs give small files.
        scale: resize factor of the grids.
    """
    paths = sorted(Path(samples_dir).glob("epoch_*.png"))
    if len(paths) > max_frames:
        keep = np.unique(np.linspace(0, len(paths) - 1, max_frames).round().astype(int))
        paths = [paths[i] for i in keep]
    frames = []
    for frame_path in paths:
        grid = Image.open(frame_path).convert("L")
        if scale != 1.0:
            size = (round(grid.width * scale), round(grid.height * scale))
            grid = grid.resize(size, Image.Resampling.NEAREST)
        frame = Image.new("L", (grid.width, grid.height + 16), color=255)
        frame.paste(grid, (0, 16))
        epoch = int(frame_path.stem.split("_")[1])
        ImageDraw.Draw(frame).text((4, 2), f"epoch {epoch}", fill=0)
        frames.append(frame)
    if not frames:
        raise ValueError(f"{samples_dir} holds no epoch_*.png grids")
    with atomic_path(path) as temporary:
        frames[0].save(
            temporary, save_all=True, append_images=frames[1:],
            duration=milliseconds, loop=0,
        )
    return Path(path)


def make_figures(model, images, labels, output_dir, run_dir=None):
    """Writes every picture into `output_dir`; returns their paths.

    Args:
        model: a trained `VAE`.
        images, labels: test images and labels (-1 if none).
        output_dir: folder for the pictures.
        run_dir: optional training-run folder (`run_folder.RunFolder`), for
            its history and sample grids (training curves and the GIF are
            skipped without them).
    """
    output_dir = Path(output_dir)
    written = [
        latent_scatter(model, images, labels, output_dir / "latent_scatter.png"),
        latent_manifold(model, images, output_dir / "latent_manifold.png", labels=labels),
        reconstructions(model, images, output_dir / "reconstructions.png", labels=labels),
    ]
    if len(images) >= 2:  # a pair to interpolate between
        written.insert(2, interpolation(model, images, output_dir / "interpolation.png", labels=labels))
    run = RunFolder(run_dir) if run_dir is not None else None
    if run is not None and run.history.is_file():
        written.append(training_curves(run.history, output_dir / "training_curves.png"))
    if run is not None and run.sample_grids():
        written.append(samples_gif(run.samples, output_dir / "samples.gif"))
    return written
