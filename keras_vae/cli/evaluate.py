"""Estimate a saved model's test log-likelihood: `python scripts/evaluate.py MODEL.keras`.

Reports the negative ELBO, its reconstruction and KL terms, the
importance-weighted NLL estimate (Burda et al.), bits per dimension and active
units on the test split (or, with `--split validation`, on the images the run
held out of its training set), as a table and as JSON. See keras_vae/evaluation.py.
"""

import sys
import time

import keras

from keras_vae import data, engines, evaluation, files, memory
from keras_vae.cli import flags
from keras_vae.model.config import is_likelihood


def main(args, prog):
    """Estimates the likelihood of `args.model` on a split; prints a table."""
    status = engines.launch(args.devices)
    if status is not None:  # worker processes ran this command (torch --devices N)
        return status
    topology = engines.setup(args.devices)  # before the backend runs anything
    if topology.chief:
        flags.announce_backend(prog, topology.describe())
    with evaluation.evaluation_scope(topology):  # the model's variables on every device
        model, images, labels, dataset, binarize, split, _ = flags.load_model_and_test_split(
            args, default_binarize="dynamic"
        )
    start = time.perf_counter()
    results = evaluation.evaluate_likelihood(
        model, images, labels=labels if model.conditional else None, iw_samples=args.iw_samples, seed=args.seed,
        max_rows=args.max_rows or memory.MAX_ROWS, verbose=1 if sys.stdout.isatty() and topology.chief and not args.quiet else 0,
        topology=topology,
    )
    topology.finish()
    if not topology.chief:  # the chief reports for all
        return
    results.update(
        model=str(args.model),
        dataset=dataset,
        split=split,
        binarize=binarize,
        likelihood=model.likelihood,
        conditional=model.conditional,
        backend=keras.backend.backend(),
        devices=topology.devices,
        seconds=time.perf_counter() - start,
    )
    print(format_table(results))
    if args.output:
        files.write_json(args.output, results)


def format_table(r):
    """The results as the lines `evaluate.py` prints; where the model's loss is
    not a likelihood of the pixels (the Bernoulli on grey levels) the estimates
    are those of a loss, and each such line says so."""
    likelihood = r.get("likelihood", "bernoulli")
    binary = data.binary_pixels(r["dataset"], r["binarize"])
    if is_likelihood(likelihood, binary):
        pixels, not_likelihood = ("binary" if binary else "8-bit") + f" pixels, {likelihood} likelihood", ""
    else:
        pixels = "grey-level pixels, bernoulli: a loss, not a likelihood"
        not_likelihood = "  (of the loss on grey pixels: not a likelihood)"
    return "\n".join(
        [
            f"{r['model']} on the {r['dataset']} {r.get('split', 'test')} split ({r['num_examples']} images, "
            f"binarize={r['binarize']}; {pixels}), backend {r['backend']}",
            f"  -ELBO                {r['neg_elbo']:9.2f} nats",
            f"    reconstruction     {r['reconstruction']:9.2f} nats",
            f"    KL                 {r['kl']:9.2f} nats",
            f"  {'IWAE NLL (k=' + str(r['iw_samples']) + ')':<20} {r['iw_nll']:9.2f} nats"
            + ("  (conditional: -log p(x|y))" if r.get("conditional") else "") + not_likelihood,
            f"  bits per dimension   {r['bits_per_dim']:9.4f}" + not_likelihood,
            f"  active units         {r['active_units']:6d} / {r['latent_dim']}",
            f"  ({r['seconds']:.1f} s)",
        ]
    )

