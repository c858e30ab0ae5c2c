"""The ablation of `experiment=fashion_cnn_long`: the recipe, then each of its tools removed in turn, the tools it
leaves out added in turn, and the fast recipe - whole `cnnlab train` processes on this machine, same seed - with test
accuracy and wall time per row (README, "Training recipes").

Removing test-time augmentation does not change training, so that row re-tests the recipe run's own best checkpoint
with plain logits. Every other row is its own run. Finished rows are kept in
`--out/<row>/metrics.json` and not rerun (delete a folder to redo that row).

    python -m benchmarks.recipe_ablation [--out benchmarks/results/ablation] [--rows full,-decay_groups,...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cnnlab
from benchmarks.common import run_cnnlab
from cnnlab.run.checkpoints import trained_data_config
from cnnlab.run.inference import run_test_split
from cnnlab.utils.config import build

RECIPE = "experiment=fashion_cnn_long"
# row -> (what it is, overrides of the recipe); the first is the recipe itself
RUNS = {
    "full": ("fashion_cnn_long as configured", [RECIPE]),
    "+decay_groups": (
        "plus no weight decay on biases and norms (cnnlab's default)",
        [RECIPE, "optimizer.decay_norm_and_bias=false"],
    ),
    "+mixup_cutmix": (
        "plus mixup 0.8 / CutMix 1.0 (timm's values), off for the last 3 epochs",
        [RECIPE, "model.mix={mixup_alpha: 0.8, cutmix_alpha: 1.0, stop_epoch: 19}"],
    ),
    "+randaugment": (
        "plus RandAugment (2 ops at magnitude 9) before the shifts and flips",
        [RECIPE, "+data.augment.policy=randaugment"],
    ),
    "+ema": (
        "plus an EMA of the weights (decay 0.999) for validation, checkpoints and test",
        [RECIPE, "callbacks=ema"],
    ),
    "+lr_finder": (
        "the LR finder's suggestion as one-cycle's peak LR instead of 6e-3",
        [RECIPE, "tune=lr_find", "tune.apply=true"],
    ),
    "fast": ("experiment=fashion_cnn_fast (5 epochs)", ["experiment=fashion_cnn_fast"]),
}
RETESTS = {  # rows measured on the recipe run's best checkpoint: (what, tta)
    "-tta": ("plain logits instead of mirror-averaged (the recipe's checkpoint re-tested)", "none"),
}


def retest(checkpoint: Path, tta: str) -> float:
    """Test accuracy of the checkpoint with the given TTA."""
    model = cnnlab.load_classifier(checkpoint, "cpu")
    model.tta = tta
    datamodule = build(trained_data_config(model, checkpoint))
    datamodule.setup("test")
    run = run_test_split(model.eval(), datamodule.test_dataloader())
    return float((run.preds == run.labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation"))
    order = ["full", *RETESTS, *list(RUNS)[1:]]
    parser.add_argument("--rows", default=",".join(order), help="comma-separated rows to run or show")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rows = args.rows.split(",")
    results: dict[str, dict] = {}
    for row in [r for r in rows if r in RUNS]:
        folder = args.out / row.replace(" ", "_")
        done = folder / "metrics.json"
        if not done.is_file():
            elapsed, metrics = run_cnnlab(folder, *RUNS[row][1], f"seed={args.seed}", "logger=csv")
            metrics["wall_s"] = round(elapsed, 1)
            done.write_text(json.dumps(metrics, indent=2))
        results[row] = json.loads(done.read_text())
        if "lr_find" in row:
            found = json.loads((folder / "lr_find.json").read_text())
            results[row]["note"] = f"LR {found['suggestion']:.3g}"
    full = results.get("full")
    for row in [r for r in rows if r in RETESTS]:
        if full is None:
            continue
        acc = retest(Path(full["best_checkpoint"]), RETESTS[row][1])
        results[row] = {"test/acc": acc, "wall_s": full["wall_s"], "same_run": True}
    base = full["test/acc"] if full else None
    print("| row | what | test acc | vs recipe | wall time |\n|---|---|---|---|---|")
    for row, metrics in ((r, results[r]) for r in rows if r in results):
        what = RUNS[row][0] if row in RUNS else RETESTS[row][0]
        delta = f"{metrics['test/acc'] - base:+.4f}" if base is not None and row != "full" else ""
        wall = f"{metrics['wall_s'] / 60:.1f} min" + (" (the recipe's run)" if metrics.get("same_run") else "")
        what += f" ({metrics['note']})" if metrics.get("note") else ""
        print(f"| {row} | {what} | {metrics['test/acc']:.4f} | {delta} | {wall} |")


if __name__ == "__main__":
    main()
