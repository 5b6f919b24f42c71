"""The yardstick: the VAE trained by a plain PyTorch loop, no Keras.

The same model as keras_vae's default (784 -> 512 -> 2 x 20, 20 -> 512 -> 784),
loss (Bernoulli cross-entropy summed over pixels + analytic KL, mean over the
batch), Adam 1e-3, batch 128, data in memory, reshuffled every epoch: the loop
a PyTorch user would write by hand (as in pytorch/examples `vae`).

Run by benchmarks/run.py as `python benchmarks/torch_loop.py DATA.npy --epochs N`;
prints one JSON line of timings.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memory import peak_rss_mb, rss_mb


class VAE(nn.Module):
    def __init__(self, latent_dim=20, hidden_dim=512, pixels=784):
        super().__init__()
        self.hidden = nn.Linear(pixels, hidden_dim)
        self.z_mean = nn.Linear(hidden_dim, latent_dim)
        self.z_log_var = nn.Linear(hidden_dim, latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.logits = nn.Linear(hidden_dim, pixels)

    def encode(self, x):
        h = F.relu(self.hidden(x))
        return self.z_mean(h), self.z_log_var(h)

    def reparameterize(self, mean, log_var):
        return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)

    def decode(self, z):
        return self.logits(F.relu(self.decoder_hidden(z)))

    def forward(self, x):
        mean, log_var = self.encode(x)
        return self.decode(self.reparameterize(mean, log_var)), mean, log_var


def loss_fn(x, logits, mean, log_var):
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return (reconstruction + kl) / x.shape[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data", help=".npy file of training images in [0, 1]")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    x = torch.from_numpy(np.load(args.data).reshape(-1, 784).astype("float32"))
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds, memory, losses = [], [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        total = 0.0
        for indices in torch.randperm(len(x)).split(args.batch_size):
            batch = x[indices]
            loss = loss_fn(batch, *model(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(indices)
        seconds.append(time.perf_counter() - start)
        memory.append(rss_mb())
        losses.append(total / len(x))
    print(json.dumps({
        "epoch_seconds": seconds, "rss_mb": memory, "peak_rss_mb": peak_rss_mb(),
        "losses": losses, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
