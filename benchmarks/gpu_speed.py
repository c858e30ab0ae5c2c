"""GPU speed, one script: images/s and training time to 0.92 test accuracy for the fast recipe, and images/s
of lite0 fine-tuning at 224 px, each beside the usual torchvision dataset + DataLoader pipeline (same model).

Runs on a machine with one CUDA GPU (see benchmarks/gpu_speed.sh for a bare one). Prints a table and writes
gpu_speed.json. Epoch times are the training loop alone (no validation), the first epoch (cuDNN autotune,
compilation) left out of images/s; "time to 0.92" adds up training epochs until the test accuracy measured
after an epoch first reaches 0.92.

    python -m benchmarks.gpu_speed --data-dir .gpudata --workers 8 --out /tmp/gpu_speed
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

import cnnlab
from benchmarks.common import EpochTimer, compose_train
from benchmarks.torchvision_pipeline import TorchvisionFashionMNIST, fit_usual, torchvision_root


class TestAccuracyAfterEachEpoch(L.Callback):
    """Test accuracy after every training epoch, on uint8 test tensors kept on the GPU (outside the timing)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels, self.accuracies = images, labels, []

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        was_training = module.training
        module.eval()
        images, labels = self.images.to(module.device), self.labels.to(module.device)
        bf16 = str(trainer.precision).startswith("bf16")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            correct = sum(int((module(images[i : i + 2048]).argmax(1) == labels[i : i + 2048]).sum())
                          for i in range(0, len(labels), 2048))  # fmt: skip
        self.accuracies.append(correct / len(labels))
        module.train(was_training)


class SyncAudit(L.Callback):
    """Counts the host syncs of one training epoch (torch.cuda sync debug mode), by the source line causing them."""

    def __init__(self) -> None:
        self.syncs: Counter[str] = Counter()
        self.steps = 0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._recording = warnings.catch_warnings(record=True)
        self._records = self._recording.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.steps += 1
        if batch_idx == trainer.num_training_batches - 1:
            torch.cuda.set_sync_debug_mode(0)
            self._recording.__exit__(None, None, None)
            self.syncs.update(f"{Path(w.filename).name}:{w.lineno}" for w in self._records
                              if "synchronizing" in str(w.message))  # fmt: skip


def sync_audit(overrides: list[str]) -> dict:
    """The fast recipe as users run it (default callbacks, CSV logger): host syncs per training step."""
    audit = SyncAudit()
    with tempfile.TemporaryDirectory() as out:
        cnnlab.train(compose_train(*overrides, "trainer.max_epochs=1", "trainer.limit_train_batches=200",
                                   "trainer.limit_val_batches=2", out=out), callbacks=[audit])  # fmt: skip
    return {"steps": audit.steps, "host_syncs": sum(audit.syncs.values()), "by_line": dict(audit.syncs)}


def time_to(target: float, epoch_times: list[float], accuracies: list[float]) -> float | None:
    for epoch, accuracy in enumerate(accuracies):
        if accuracy >= target:
            return sum(epoch_times[: epoch + 1])
    return None


def cnnlab_run(overrides: list[str], test: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
    timer = EpochTimer()
    callbacks: list[L.Callback] = [timer]
    tracker = TestAccuracyAfterEachEpoch(*test) if test is not None else None
    if tracker:
        callbacks.append(tracker)
    start = time.perf_counter()
    cnnlab.train(compose_train(*overrides), callbacks=callbacks)
    return _result(timer, tracker, time.perf_counter() - start)


def usual_run(overrides: list[str], root: Path, workers: int, image_size: int | None,
              test: tuple[torch.Tensor, torch.Tensor] | None) -> dict:  # fmt: skip
    """The same recipe (model, optimizer, schedule, precision, augmentation on or off) on the usual pipeline."""
    cfg = compose_train(*overrides)
    data = instantiate(cfg.data)
    timer = EpochTimer()
    tracker = TestAccuracyAfterEachEpoch(*test) if test is not None else None
    datamodule = TorchvisionFashionMNIST(root, cfg.data.batch_size, workers, data.augments_training, image_size)
    start = time.perf_counter()
    fit_usual(cfg, data.info, datamodule, [timer] + ([tracker] if tracker else []), enable_progress_bar=False)
    return _result(timer, tracker, time.perf_counter() - start)


def _result(timer: EpochTimer, tracker: TestAccuracyAfterEachEpoch | None, wall: float) -> dict:
    result = {"images_per_s": round(timer.images_per_s()), "epoch_s": [round(t, 2) for t in timer.times],
              "wall_s": round(wall, 1)}  # fmt: skip
    if tracker:
        result["test_acc"] = [round(a, 4) for a in tracker.accuracies]
        result["s_to_0.92"] = time_to(0.92, timer.times, tracker.accuracies)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the usual pipeline")
    parser.add_argument("--out", default=".")
    parser.add_argument("--lite0-steps", type=int, default=120, help="steps per lite0 epoch (2 epochs; 1st skipped)")
    parser.add_argument("--smoke", action="store_true", help="a few CPU steps of each run: checks the script only")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        raise SystemExit("gpu_speed needs a CUDA GPU (the CPU benchmarks are vs_plain_loop, vs_torchvision_loader).")
    # cuDNN autotuning stays off (Lightning's default): for lite0 at 224 px it spent 38.6 s on the first step,
    # then ran at the same ~25 ms per step as without it (measured on an H200).
    device = ["trainer=cpu", "trainer.max_epochs=2", "trainer.limit_train_batches=3"] if args.smoke else ["trainer=gpu"]
    common = [*device, f"paths.data_dir={args.data_dir}", "logger=none", "test=false",
              "trainer.limit_val_batches=0", "callbacks=none", "trainer.enable_progress_bar=false"]  # fmt: skip
    fast = ["experiment=fashion_cnn_fast", *common]
    datamodule = instantiate(compose_train(*fast).data)
    datamodule.setup()
    test = datamodule.splits.test
    lite0_size = 64 if args.smoke else 224
    # every layer trains from the first step (no head-only epoch), on the whole training split; epoch 1 (cuDNN
    # autotuning, compilation) is left out of images/s
    lite0 = ["experiment=lite0_finetune", f"model.image_size={lite0_size}", "data.batch_size=128",
             "data.train_size=null", "transfer.freeze_epochs=0", "trainer.max_epochs=2",
             f"trainer.limit_train_batches={2 if args.smoke else args.lite0_steps}", *common]  # fmt: skip
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = torchvision_root([Path(args.data_dir) / "FashionMNIST" / "raw",
                                 *map(Path, datamodule.system_dirs)], Path(scratch))  # fmt: skip
        runs = {
            "fast recipe, cnnlab (bf16, data on the GPU)": lambda: cnnlab_run(fast, test),
            "fast recipe, cnnlab + model.compile=true": lambda: cnnlab_run([*fast, "model.compile=true"], test),
            "fast recipe, cnnlab fp32": lambda: cnnlab_run([*fast, "trainer.precision=32-true"], test),
            "fast recipe, cnnlab, batch 512 (speed only)": lambda: cnnlab_run([*fast, "data.batch_size=512"], None),
            f"fast recipe, torchvision + DataLoader ({args.workers} workers)":
                lambda: usual_run(fast, root, args.workers, None, test),
            "lite0 finetune 224 px, cnnlab (bf16)": lambda: cnnlab_run(lite0, None),
            "lite0 finetune 224 px, cnnlab + model.compile=true":
                lambda: cnnlab_run([*lite0, "model.compile=true"], None),
            f"lite0 finetune 224 px, torchvision + DataLoader ({args.workers} workers)":
                lambda: usual_run(lite0, root, args.workers, lite0_size, None),
        }  # fmt: skip
        if not args.smoke:
            dropped = ("logger=", "callbacks=", "test=", "trainer.limit_val_batches=", "trainer.enable_progress_bar=")
            audit = [o for o in fast if not o.startswith(dropped)]
            runs["host syncs in 200 training steps of the fast recipe (default callbacks, csv logger)"] = lambda: (
                sync_audit([*audit, "logger=csv", "test=false"])
            )
        for name, run in runs.items():
            if args.smoke and "compile" in name:
                continue
            try:
                results[name] = run()
            except Exception as err:  # one failing variant must not lose the others' figures
                results[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            print(f"{name}: {results[name]}", flush=True)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gpu_speed.json").write_text(json.dumps(results, indent=1))
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    print(f"\n{device_name}, torch {torch.__version__}")
    print("| run | images/s | s to 0.92 test acc | test acc per epoch | wall s |\n|---|---|---|---|---|")
    for name, r in results.items():
        if "host_syncs" in r:
            print(f"| {name} | {r} | | | |")
            continue
        print(f"| {name} | {r.get('images_per_s', '-')} | {r.get('s_to_0.92', '-')} | {r.get('test_acc', '-')} | "
              f"{r.get('wall_s', r.get('error'))} |")  # fmt: skip


if __name__ == "__main__":
    main()
