"""The notebooks run top to bottom (quick mode, as in CI), and the committed copies carry the full run's results."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cnnlab.run.study_plan import MODES, SIZES, cells

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_quickstart", "02_transfer_study", "03_sweeps", "04_inside_the_cnn")


def outputs_of(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def text_of(outputs: list[dict]) -> str:
    parts = [o.get("text", "") for o in outputs]
    parts += [o.get("data", {}).get("text/markdown", "") + o.get("data", {}).get("text/plain", "") for o in outputs]
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_in_quick_mode(name, tmp_path, monkeypatch, fashion_dir):
    monkeypatch.setenv("CNNLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("CNNLAB_NOTEBOOK_OUTPUTS", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # what is checked below must come from this run
    run_in = {"metadata": {"path": str(NOTEBOOKS)}}
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources=run_in).execute()
    outputs = outputs_of(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "a notebook that plots nothing"
    assert list(tmp_path.rglob("*")), "it wrote its runs under CNNLAB_NOTEBOOK_OUTPUTS"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_carries_the_full_runs_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    outputs = outputs_of(notebook)
    assert all(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code"), "not executed"
    assert any("image/png" in o.get("data", {}) for o in outputs)
    text = text_of(outputs)
    quick_marks = (
        "quick mode",
        "epochs per size; quick",
        "01_quickstart_quick",
        "study_quick",
        "03_sweeps_quick",
        "04_inside_quick",
    )
    assert not [mark for mark in quick_marks if mark in text], "committed from a quick run"


def test_study_tables_have_every_cell_measured_and_shown_with_its_interval():
    shown = text_of(outputs_of(nbformat.read(NOTEBOOKS / "02_transfer_study.ipynb", as_version=4)))
    gpu = json.loads((NOTEBOOKS / "study_results_h200.json").read_text())
    assert {(r["mode"], r["train_size"]) for r in gpu} == {(m, s) for m in MODES for s in SIZES}
    assert all(0.1 < r["test_acc"] <= 1 and r["duration_s"] > 0 for r in gpu)
    for row in gpu:  # the one-run GPU cells are shown as measured, marked as one run
        if row["mode"] in ("lite0 scratch", "lite0 finetune"):
            assert f"{row['test_acc']:.4f}" in shown and f"{row['mode']} (H200, 1 run)" in shown
    cpu = json.loads((NOTEBOOKS / "study_results_cpu_seeds.json").read_text())
    baselines = json.loads((NOTEBOOKS / "study_baselines_cpu_seeds.json").read_text())
    assert {(r["mode"], r["train_size"], r["seed"]) for r in cpu} == {
        (m, s, seed) for m in ("cnn scratch", "lite0 frozen") for s in SIZES for seed in (1, 2, 3)}  # fmt: skip
    for table in (cpu, baselines):
        for label, by_size in cells(table)[1].items():
            for size, spread in by_size.items():
                assert spread.n == 3 and spread.cell() in shown, (label, size)  # every cell: mean +- interval (n=3)
