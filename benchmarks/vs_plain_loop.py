"""cnnlab's seed recipe vs a minimal hand-written PyTorch loop: the same model code on the same tensors.

Both train the seed CNN on Fashion-MNIST (batch 64, Adam 1e-3), alternating A/B in one process, and
we compare the median time of a training epoch (the forward/backward/step loop, without validation).
What the ratio shows is Lightning's and cnnlab's own overhead: logging, metrics, hooks, progress bar.

    python -m benchmarks.vs_plain_loop --epochs 2 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import cnnlab
from benchmarks.common import EpochTimer, compose_train, report
from cnnlab.run.builders import build_model


def plain_loop(cfg, datamodule, epochs: int) -> list[float]:
    """The loop a careful person writes by hand: shuffled index batches, Adam, nothing else."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, datamodule.info)
    net = torch.nn.Sequential(model.preprocess, model.backbone, model.head).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)
    images, labels = datamodule.splits.train
    batch = cfg.data.batch_size
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="seed_fashion")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    overrides = [f"experiment={args.experiment}", f"trainer.max_epochs={args.epochs}", "test=false"]
    cfg = compose_train(*overrides)
    datamodule = __import__("hydra").utils.instantiate(cfg.data)
    datamodule.setup()
    plain, ours = [], []
    for _ in range(args.rounds):
        plain += plain_loop(cfg, datamodule, args.epochs)
        timer = EpochTimer()
        cfg = compose_train(*overrides)
        cnnlab.train(cfg, callbacks=[timer])
        ours += timer.times
    print(
        f"seed recipe ({args.experiment}), train epoch time, {args.rounds} alternating rounds of {args.epochs} epochs"
    )
    report("cnnlab", ours, "plain loop", plain)


if __name__ == "__main__":
    main()
