"""Class weights on an imbalanced Fashion-MNIST: two classes cut to a few percent of their training images, the test
set left balanced, one `cnnlab train` run with `model.class_weights=balanced` and one without (same seed). Prints
each class's test recall and the overall accuracy and macro recall of both (README, "When to use class weights").

    python -m benchmarks.class_weights [--rare 2,6] [--keep 0.05] [--out benchmarks/results/class_weights]

The imbalanced data is a DataModule of this file (`ImbalancedFashion`), named by `data._target_` - the way a user's
own DataModule plugs into `cnnlab train`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.common import run_cnnlab
from cnnlab.data import FashionMNISTDataModule


class ImbalancedFashion(FashionMNISTDataModule):
    """Fashion-MNIST with the classes `rare` cut to `keep` of their training images (seeded); test untouched."""

    def __init__(self, rare: list[int] | None = None, keep: float = 0.05, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rare, self.keep = list(rare or []), keep

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        train_x, train_y, test_x, test_y = super().load()
        generator = torch.Generator().manual_seed(self.seed)
        kept = [torch.nonzero(~torch.isin(train_y, torch.tensor(self.rare))).flatten()]
        for label in self.rare:
            members = torch.nonzero(train_y == label).flatten()
            order = torch.randperm(len(members), generator=generator)
            kept.append(members[order[: max(1, round(self.keep * len(members)))]])
        index = torch.cat(kept).sort().values
        return train_x[index], train_y[index], test_x, test_y


def recalls(confusion: list[list[int]]) -> list[float]:
    matrix = torch.tensor(confusion, dtype=torch.float64)
    return (matrix.diag() / matrix.sum(1).clamp(min=1)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rare", default="2,6", help="the classes to cut (Fashion-MNIST: 2 Pullover, 6 Shirt)")
    parser.add_argument("--keep", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/class_weights"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    data = [
        "data._target_=benchmarks.class_weights.ImbalancedFashion",
        f"+data.rare=[{args.rare}]",
        f"+data.keep={args.keep}",
    ]
    results = {}
    for name, weights in (("plain", "null"), ("balanced", "balanced")):
        folder = args.out / name
        if not (folder / "metrics.json").is_file():
            run_cnnlab(folder, "experiment=fashion_cnn_fast", *data, f"model.class_weights={weights}",
                       f"seed={args.seed}", "logger=csv")  # fmt: skip
        results[name] = json.loads((folder / "metrics.json").read_text())
    names = FashionMNISTDataModule.class_names
    rare = {int(c) for c in args.rare.split(",")}
    per_class = {name: recalls(m["test/confusion_matrix"]) for name, m in results.items()}
    print(f"classes {', '.join(names[c] for c in sorted(rare))} cut to {args.keep:.0%} of their training images\n")
    print("| class | recall, plain loss | recall, class_weights=balanced |\n|---|---|---|")
    for c, label in enumerate(names):
        mark = " (rare)" if c in rare else ""
        print(f"| {label}{mark} | {per_class['plain'][c]:.3f} | {per_class['balanced'][c]:.3f} |")
    for key, label in (("test/acc", "test accuracy"),):
        print(f"| **{label}** | {results['plain'][key]:.4f} | {results['balanced'][key]:.4f} |")
    macro = {name: sum(r) / len(r) for name, r in per_class.items()}
    print(f"| **macro recall** | {macro['plain']:.4f} | {macro['balanced']:.4f} |")


if __name__ == "__main__":
    main()
