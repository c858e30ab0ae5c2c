"""The house rules that keep the code layered: nothing imports upward (import-linter, `make lint`), no import hidden
inside a function unless it is a commented lazy import, and importing a module changes nothing global."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def function_level_imports() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom) and "# lazy:" not in lines[inner.lineno - 1]:
                    found.append(f"{path.relative_to(SRC)}:{inner.lineno}: {lines[inner.lineno - 1].strip()}")
    return found


def test_no_import_hides_inside_a_function_unless_it_says_why_it_is_lazy():
    assert function_level_imports() == []


def test_the_layer_contracts_hold():
    result = subprocess.run([Path(sys.executable).parent / "lint-imports"], capture_output=True, text=True,
                            cwd=SRC.parent)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


def test_importing_the_entry_points_registers_nothing():
    code = ("import cnnlab.run.training, cnnlab.run.evaluation, cnnlab.run.prediction, cnnlab.run.exporting; "
            "from omegaconf import OmegaConf; print(OmegaConf.has_resolver('unique_dir'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
