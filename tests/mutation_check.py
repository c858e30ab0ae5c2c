"""The suite's strength, checked once by hand: break one thing on purpose, run the tests that should notice, and
print which fail (a mutation no test notices is a hole in the suite). Restores every file afterwards.

    python -m tests.mutation_check [--only frozen-trains ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cnnlab"

# name -> (file, original text, broken text, the test files to run)
MUTATIONS = {
    "frozen-trains": ("transfer/policy.py", 'if mode == "frozen" or epoch < self.config.freeze_epochs:',
                      "if epoch < self.config.freeze_epochs:", ["tests/test_policy.py", "tests/test_transfer.py"]),
    "no-divergence-check": (
        "run/callbacks/divergence.py",
        "self._bad_steps += (~torch.isfinite(loss.detach())).to(torch.int64)",
        "pass", ["tests/test_reliability.py"],
    ),
    "no-loader-resume": ("run/callbacks/resumable.py", "        states, self._loader_states = self._loader_states, []",
                         "        states, self._loader_states = [], []", ["tests/test_reliability.py"]),
    "predict-swaps-two-classes": ("run/inference.py", '"label": model.class_names[c]',
                                  '"label": model.class_names[{0: 1, 1: 0}.get(c, c)]', ["tests/test_apply.py"]),
    "non-atomic-checkpoints": (
        "run/checkpoints.py",
        "write_atomic(path, lambda handle: torch.save(checkpoint, handle))",
        "torch.save(checkpoint, path)", ["tests/test_reliability.py"],
    ),
    "accumulation-without-division": ("models/optimization.py", "module.manual_backward(loss / n if n > 1 else loss)",
                                      "module.manual_backward(loss)", ["tests/test_trainer_values.py"]),
    "cam-at-the-first-stage": ("inspection/layers.py", "return list(conv_stages(model).items())[-1]",
                               "return list(conv_stages(model).items())[0]", ["tests/test_explain.py"]),
    "sanity-randomizes-nothing": ("inspection/cams.py", "                module.reset_parameters()  # Conv",
                                  "                pass  # Conv", ["tests/test_explain.py"]),
    "macs-without-the-head": ("inspection/summary.py", "macs=total_flops // 2,",
                              "macs=(total_flops - sum(sum(flops.get(r.name, {}).values()) for r in rows "
                              "if r.name.startswith('head'))) // 2,", ["tests/test_summary.py"]),
    "tta-is-plain": ("models/tta.py", '    if mode == "none":\n        return logits_of(images)',
                     "    return logits_of(images)", ["tests/test_recipes.py"]),
    "mixup-keeps-targets": ("models/mixing.py", "return (self.cutmix if use_cutmix else self.mixup)(images, labels)",
                            "return images, F.one_hot(labels, self.num_classes).to(images.dtype)",
                            ["tests/test_recipes.py"]),
    "ema-test-loads-raw": (
        "run/callbacks/ema.py",
        'if trainer.state.fn == "fit":\n            super().on_load_checkpoint',
        "if True:\n            super().on_load_checkpoint", ["tests/test_recipes.py"],
    ),
    "policy-one-op-per-batch": ("data/policies.py", "(len(names), (n,), device=images.device, generator=generator)",
                                "(len(names), (1,), device=images.device, generator=generator).expand(n)",
                                ["tests/test_recipes.py"]),
    "decay-on-biases": ("transfer/policy.py", 'return param.ndim <= 1 or name.endswith(".bias") or name in named',
                        "return False or name in named", ["tests/test_recipes.py"]),
    "lr-finder-not-applied": ("run/training.py", '        use_lr(model, findings["suggestion"])', "        pass",
                              ["tests/test_recipes.py"]),
    "class-weights-ignored": ("models/classifier.py", "weight=self.class_weight, label_smoothing",
                              "weight=None, label_smoothing", ["tests/test_recipes.py"]),
    "any-module-trusted": ("run/checkpoints.py", 'return any(target.startswith(f"{module}.") for module in trusted)',
                           "return True", ["tests/test_boundary.py"]),
    "run-dir-written-over": ("utils/rundir.py", "    if not reuse:\n        try:", "    if False:\n        try:",
                             ["tests/test_boundary.py"]),
    "resume-keeps-old-config": ("models/classifier.py", "if self.run_config is None:  # a model rebuilt",
                                "if True:  # a model rebuilt", ["tests/test_boundary.py"]),
    "shard-pickle-accepted": ("data/shard_index.py", 'LOCKED_SERIALIZERS = {name: RefusedSerializer(name) for name in',
                              "LOCKED_SERIALIZERS = {} and {name: RefusedSerializer(name) for name in",
                              ["tests/test_hostile_shards.py"]),
    "hf-cell-followed-outside": ("data/hf_files.py", "if not any(inside(full, root) for root in self.roots):",
                                 "if False:", ["tests/test_hostile_data.py"]),
    "no-pixel-limit": ("data/images.py", "if image.width * image.height > max_pixels:", "if False:",
                       ["tests/test_hostile_data.py", "tests/test_hostile_shards.py"]),
    "csv-formulas-kept": ("utils/text.py", """return f"'{text}" if text.startswith(FORMULA_STARTS) else text""",
                          "return text", ["tests/test_boundary.py"]),
}  # fmt: skip


def run(name: str) -> list[str]:
    """The tests that fail with mutation `name` applied."""
    file, original, broken, tests = MUTATIONS[name]
    path = SRC / file
    text = path.read_text()
    assert text.count(original) == 1, f"{name}: the original text is not (once) in {file}"
    path.write_text(text.replace(original, broken))
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
                                cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    finally:
        path.write_text(text)
    return [line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith("FAILED ")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(MUTATIONS), default=list(MUTATIONS))
    args = parser.parse_args()
    for name in args.only:
        failed = run(name)
        verdict = f"caught by {len(failed)} test(s)" if failed else "NOT CAUGHT"
        print(f"{name}: {verdict}", *(f"    {test}" for test in failed), sep="\n", flush=True)


if __name__ == "__main__":
    main()
