"""The docs cannot drift: every figure, command and link that README.md and docs/*.md quote is checked here.

- Figures: each `<!--fig KEY-->VALUE<!--/fig-->` shows docs/figures.json's value (docs/figures.py is the tool), and
  no accuracy-like number is written by hand in prose.
- Commands: every line of a ```bash / sh / shell / console block (and every verb's `examples`) is checked: a
  `cnnlab` line is composed and checked as the CLI would before running it (`--help` and `version` forms run), a
  `make` target exists, a `python benchmarks/x.py` file exists. One test per line, named `file:line`.
- The quickstart: the block after `<!-- quickstart -->` in README.md runs for real, at tiny size, in an empty dir.
- Links: README.md's relative links (files and anchors). The pages under docs/ are mkdocs' job: `make docs`
  builds them with --strict (in CI, after `make lint`), which fails on a broken link or anchor; this suite does
  not run mkdocs.
- Each verb's `docs=` page exists.

A command that names a file or folder the docs only stand in for (`ckpt_path=$RUN/...`, `data.root=my_images`)
is composed but its values are not checked (they would need the file). A `cd` to a folder that does not exist
here (`cd ~/my_project`) stands for a project of the user's own: tests/user_project/, the worked example.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
USER_PROJECT = ROOT / "tests" / "user_project"
QUICKSTART_MARK = "<!-- quickstart -->"
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", "shell-session"}
FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
# Appended to each `cnnlab train` of the quickstart: the same commands, a few seconds of training.
TINY_TRAIN = ("trainer.max_epochs=1", "data.train_size=500", "trainer.limit_val_batches=2",
              "trainer.limit_test_batches=2", "callbacks.progress_bar.refresh_rate=0", "logger=none")  # fmt: skip
# Not run by the quickstart test: setting up (done already) or serving until stopped.
SETUP_OR_SERVING = {"pip", "pip3", "uv", "git", "apt", "apt-get", "sudo", "make", "source", ".", "conda",
                    "tensorboard", "jupyter", "mlflow"}  # fmt: skip
# Programs a documented line may run without being checked further (listed by test_other_commands_are_known).
KNOWN_PROGRAMS = {"pip", "pip3", "uv", "git", "apt", "apt-get", "sudo", "tensorboard", "cd", "export", "ls", "cat",
                  "source", ".", "mkdir", "cp", "mv", "rm", "ln", "echo", "printf", "tail", "head", "tree", "find",
                  "du", "df", "wc", "grep", "sed", "awk", "tee", "sort", "diff", "python", "python3", "jupyter",
                  "nvidia-smi", "docker", "curl", "wget", "tar", "unzip", "sqlite3", "mlflow", "wandb", "optuna",
                  "torchrun", "srun", "sbatch", "squeue", "scancel", "conda", "ruff", "lint-imports", "open",
                  "xdg-open", "env", "time", "nohup", "kill", "watch", "ssh", "scp", "rsync", "huggingface-cli",
                  "hf", "chmod", "touch", "unset", "true", "test", "[", "mktemp", "realpath", "which", "make",
                  "bash", "sh", "pytest", "optuna-dashboard", "createdb", "psql", "initdb", "pg_ctl",
                  "runuser"}  # fmt: skip
OUR_FOLDERS = {"benchmarks", "tests", "docs"}  # `python -m benchmarks.x`: the file must exist
WRAPPERS = {"sudo", "time", "nohup", "env", "exec", "command"}
# Override keys (their last part) that name a file or folder: one that does not exist is a stand-in.
PATH_KEY = re.compile(r"(^|\.)(ckpt_path|inputs?|output|root|path|file|dir|\w+_(dir|path|file|root))$")


def _load_figures_tool():
    """docs/figures.py (not a package: loaded from its file, without leaving bytecode in docs/)."""
    spec = importlib.util.spec_from_file_location("cnnlab_docs_figures", ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


figures = _load_figures_tool()


def pages() -> list[Path]:
    return figures.pages(ROOT)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ---------------------------------------------------------------------------------------------------- figures


def test_figures_agree_with_docs_figures_json():
    """Every span shows the file's value and names a known key; every key of the file is quoted; every entry says
    what measured it, when and where. `python docs/figures.py --write` fixes the values."""
    table = figures.load()
    problems = figures.entry_problems(table)
    quoted = set()
    for page in pages():
        for span in figures.spans(page):
            quoted.add(span.key)
            problems += figures.span_problems(span, table, ROOT)
    problems += [f"docs/figures.json: {key!r} is quoted nowhere" for key in table if key not in quoted]
    assert not problems, "\n".join(problems)


def test_no_accuracy_figure_is_written_by_hand():
    """A number like 0.8984 in prose drifts unseen: it must be a figure span (or sit in `code`)."""
    found = [f"{rel(page)}:{line}: {number}" for page in pages() for line, number in figures.unmarked(page)]
    assert not found, "quote these as <!--fig KEY-->VALUE<!--/fig--> (docs/figures.json):\n" + "\n".join(found)


def test_the_figures_tool_checks_and_writes(tmp_path):
    """The tool itself, on pages of its own: a stale value, an unknown key, an unquoted key, a hand-written
    number and an incomplete entry are found; --write fixes the stale value; the syntax shown as code is no span."""
    (tmp_path / "docs").mkdir()
    entry = {"source": "cnnlab train experiment=seed_fashion", "measured": "2026-12-04", "host": "2-core CPU"}
    (tmp_path / "docs" / "figures.json").write_text(json.dumps({
        "seed.acc": {"value": "0.9012", **entry}, "seed.time": {"value": "41 s", **entry},
        "unused": {"value": "1", **entry}, "partial": {"value": "2"}}))  # fmt: skip
    (tmp_path / "README.md").write_text(
        "Test accuracy <!--fig seed.acc-->0.8984<!--/fig--> in <!--fig seed.time-->41 s<!--/fig-->.\n"
        "Write a figure as `<!--fig KEY-->VALUE<!--/fig-->`; a number in `0.7777` code is fine.\n"
        "```bash\ncnnlab train  # 0.6666 in a code block is fine\n```\n"
    )
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nAbout 0.9123 by hand, <!--fig nokey-->3<!--/fig-->.\n")
    problems = figures.check(tmp_path)
    text = "\n".join(problems)
    assert "README.md:1: fig 'seed.acc' shows '0.8984' but docs/figures.json has '0.9012'" in text
    assert "docs/index.md:3: fig 'nokey' is not a key" in text
    assert "docs/index.md:3: 0.9123 looks like a measured figure" in text
    assert "'unused' is quoted nowhere" in text and "'partial' lacks source, measured, host" in text
    assert "'KEY'" not in text and "0.7777" not in text and "0.6666" not in text and "seed.time" not in text
    assert len(problems) == 6, text

    result = subprocess.run([sys.executable, str(ROOT / "docs" / "figures.py"), "--write", "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "updated README.md" in result.stdout, result.stdout + result.stderr
    assert "<!--fig seed.acc-->0.9012<!--/fig-->" in (tmp_path / "README.md").read_text()
    assert len(figures.check(tmp_path)) == 5  # the stale value is gone; the rest needs a person
    assert figures.add_missing(tmp_path) == ["nokey"]
    assert figures.load(tmp_path / "docs" / "figures.json")["nokey"] == {"value": "3", "source": "", "measured": "",
                                                                         "host": ""}  # fmt: skip
    assert "'nokey' lacks source, measured, host" in "\n".join(figures.check(tmp_path))

    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    table = {"seed.acc": {"value": "0.9012", **entry}, "seed.time": {"value": "41 s", **entry}}
    (tmp_path / "docs" / "figures.json").write_text(json.dumps(table))
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "figures.py"), "--check", "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------- commands


@dataclass
class Shell:
    """Where a documented line runs: the folder (after the block's `cd`s) and CNNLAB_CONFIG_PATH."""

    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class DocLine:
    where: str  # file:line
    text: str  # the command, continuations joined, comment dropped
    shell: Shell

    @property
    def checked(self) -> bool:
        """Whether some part of it is checked (cnnlab, make, a script, pytest), or it is only listed."""
        try:
            return any(kind(tokenize(segment)) != "other" for segment in segments(self.text))
        except ValueError:  # unbalanced quotes: its own test says so
            return True


def shell_blocks(text: str) -> Iterator[tuple[str, int, list[tuple[int, str]]]]:
    """(language, line of the opening fence, [(line number, line)]) of each fenced code block."""
    opened, lines = None, []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened, lines = (match["fence"], match["info"].lower(), number), []
        elif match and match["fence"].startswith(opened[0]) and not match["info"]:  # as long or longer closes it
            yield opened[1], opened[2], lines
            opened = None
        else:
            lines.append((number, line))


def block_commands(lang: str, lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(first line, command) of a shell block: `$ ` prompts stripped (in a console block only prompt lines are
    commands, the rest is output), `\\` continuations joined, `# comments` dropped."""
    index = 0
    while index < len(lines):
        number, text = lines[index][0], lines[index][1].strip()
        index += 1
        if text.startswith("$ ") or text == "$":
            text = text[2:]
        elif lang == "console":
            continue
        while text.endswith("\\") and index < len(lines):
            text = text[:-1].rstrip() + " " + lines[index][1].strip()
            index += 1
        text = strip_comment(text)
        if text:
            yield number, text


def strip_comment(line: str) -> str:
    """The line without its trailing `# comment` (a `#` that starts a word, outside quotes, as bash reads it)."""
    quote, escaped = None, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def segments(line: str, keep_operators: bool = False) -> list[str]:
    """The simple commands of a line, split at `&&`, `||`, `;`, `|` and `&` outside quotes and `$( )`; with
    keep_operators, the operators too (every other item), so that "".join() gives the line back."""
    parts, start, quote, depth, i = [], 0, None, 0, 0
    while i < len(line):
        char = line[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif line.startswith("$(", i):
            depth += 1
            i += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0 and char in "&|;" and not (line[i - 1 : i + 1] == ">&" or line.startswith("&>", i)):
            operator = line[i : i + 2] if line[i : i + 2] in ("&&", "||") else char
            parts += [line[start:i], operator]
            i += len(operator)
            start = i
            continue
        i += 1
    parts.append(line[start:])
    return parts if keep_operators else [p for p in parts[::2] if p.strip()]


def tokenize(segment: str) -> list[str]:
    """The words of a simple command as bash would pass them, variables and globs left as text (`$RUN/x`), a
    command substitution as `$SUBST`, redirections dropped."""
    previous = None
    while previous != segment:
        previous, segment = segment, re.sub(r"\$\([^()]*\)|`[^`]*`", "$SUBST", segment)
    words, skip = [], False
    for word in shlex.split(segment):
        if skip:
            skip = False
        elif re.fullmatch(r"\d?>>?|&>|<|\d>&\d", word):
            skip = not word.endswith(tuple("0123456789"))
        elif not re.match(r"\d?>|&>|<", word):
            words.append(word)
    return words


def command_words(tokens: list[str]) -> list[str]:
    """The words from the program on: leading `VAR=value`s and wrappers (`sudo`, `time`, `env`) dropped."""
    i = 0
    while i < len(tokens) and (re.match(r"^[A-Za-z_]\w*=", tokens[i]) or tokens[i] in WRAPPERS):
        i += 1
    return tokens[i:]


def cnnlab_args(words: list[str]) -> list[str] | None:
    """The arguments after `cnnlab` (`cnnlab ...`, `.venv/bin/cnnlab ...`, `python -m cnnlab ...`,
    `torchrun ... -m cnnlab ...`), or None for another program."""
    if not words:
        return None
    program = Path(words[0]).name
    if program == "cnnlab":
        return words[1:]
    if re.fullmatch(r"python3?(\.\d+)?|torchrun|srun", program):
        for i in range(1, len(words) - 1):
            if words[i] == "-m" and words[i + 1] == "cnnlab":
                return words[i + 2 :]
    if program == "srun" and "cnnlab" in words:
        return words[words.index("cnnlab") + 1 :]
    return None


def kind(tokens: list[str]) -> str:
    """What a simple command is, for checking: cnnlab, old-script, make, script, pytest, or other."""
    words = command_words(tokens)
    if not words:
        return "other"  # only assignments: RUN=...
    program = Path(words[0]).name
    if cnnlab_args(words) is not None:
        return "cnnlab"
    if program.startswith("cnnlab-"):
        return "old-script"
    if program == "make":
        return "make"
    if re.fullmatch(r"python3?(\.\d+)?|bash|sh", program) and len(words) > 1 and words[1].endswith((".py", ".sh")):
        return "script"
    if re.fullmatch(r"python3?(\.\d+)?", program) and words[1:2] == ["-m"] and len(words) > 2:
        return "script" if words[2].split(".")[0] in OUR_FOLDERS else "pytest" if words[2] == "pytest" else "other"
    if program == "pytest":
        return "pytest"
    return "other"


def stand_in_dir(path: str, cwd: Path, what: Path) -> Path:
    """A folder the docs name: itself if it exists here, else `what` (the worked example of a user's project)."""
    if "$" in path:
        return what
    folder = (cwd / Path(path).expanduser()).resolve()
    return folder if folder.is_dir() else what


def follow(shell: Shell, words: list[str], tokens: list[str]) -> None:
    """What a `cd` or a CNNLAB_CONFIG_PATH assignment changes for the lines after it."""
    assignments = [t for t in tokens[: len(tokens) - len(words)] if "=" in t]
    if words and words[0] == "export":
        assignments += [w for w in words[1:] if "=" in w]
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        if name == "CNNLAB_CONFIG_PATH":
            dirs = [stand_in_dir(p, shell.cwd, USER_PROJECT / "conf") for p in value.split(os.pathsep) if p]
            shell.env[name] = os.pathsep.join(map(str, dirs))
    if words and words[0] == "cd":
        shell.cwd = stand_in_dir(words[1] if len(words) > 1 else "~", shell.cwd, USER_PROJECT)


def doc_lines(path: Path, text: str | None = None) -> list[DocLine]:
    """Every command of a page's shell blocks, with the folder and environment its block set up before it."""
    text = path.read_text(encoding="utf-8") if text is None else text
    found = []
    for lang, _, lines in shell_blocks(text):
        if lang not in SHELL_LANGS:
            continue
        shell = Shell()
        for number, command in block_commands(lang, lines):
            found.append(DocLine(f"{rel(path)}:{number}", command, Shell(shell.cwd, dict(shell.env))))
            for segment in segments(command):
                try:
                    tokens = tokenize(segment)
                except ValueError:
                    continue  # reported by the line's own test
                follow(shell, command_words(tokens), tokens)
    return found


def all_doc_lines() -> list[DocLine]:
    return [line for page in pages() for line in doc_lines(page)]


def verb_examples() -> list[DocLine]:
    from cnnlab.cli import verbs

    return [DocLine(f"cnnlab {name} --help: example {i}", example, Shell())
            for name, verb in verbs().items() for i, example in enumerate(verb.examples, 1)]  # fmt: skip


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {t for m in re.finditer(r"^([\w.%/-]+(?:[ \t]+[\w.%/-]+)*)[ \t]*:(?!=)", text, re.M) for t in m[1].split()}


def stands_in(overrides: list[str], cwd: Path) -> bool:
    """Whether an override names something only the docs have: a shell variable, a glob, a <placeholder>, or a
    file or folder key (`ckpt_path=`, `inputs=`, `data.root=` ...) whose value does not exist here."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if re.search(r"[$*?<>]", value):
            return True
        if PATH_KEY.search(key) and value and not (cwd / Path(value).expanduser()).exists():
            return True
    return False


def run_main(args: list[str], capsys) -> str:
    """`cnnlab <args>` in-process (`--help`, `version`): its output; it must exit 0."""
    from cnnlab.cli import main

    try:
        main(args)
    except SystemExit as stop:
        code = stop.code
    else:
        code = 0
    out, err = capsys.readouterr()
    assert code in (0, None), f"exit {code}:\n{out[-2000:]}\n{err[-2000:]}"
    return out


def parse_study(args: list[str], monkeypatch) -> None:
    """`cnnlab study ...`: its own arguments parsed by its own parser, its train overrides composed; nothing runs."""
    from cnnlab.cli import preflight, verbs
    from cnnlab.commands.study import parse

    namespace = parse(args)
    preflight(verbs()["train"], list(namespace.overrides or []), values=False)


def check_cnnlab(args: list[str], cwd: Path, capsys, monkeypatch) -> None:
    from cnnlab.cli import PRINT_ONLY_FLAGS, preflight, split_flags, verbs
    from cnnlab.commands import report

    table = verbs()
    if not args or args[0] in ("-h", "--help", "help", "version", "--version", "-V"):
        run_main(args, capsys)
        return
    verb, rest = args[0], args[1:]
    assert verb in table, f"`cnnlab {verb}` is not a verb; the verbs: {', '.join(table)}"
    if "-h" in rest or "--help" in rest:
        run_main(args, capsys)
    elif verb == "report":
        report.parse(rest)
    elif verb == "study":
        parse_study(rest, monkeypatch)
    elif table[verb].config is not None:
        overrides, flags = split_flags(rest)
        values = not stands_in(overrides, cwd) and not any(f in flags for f in PRINT_ONLY_FLAGS)
        preflight(table[verb], overrides, values=values)
    else:
        raise AssertionError(f"cnnlab {verb} takes plain arguments and tests/test_docs.py cannot parse them yet")


def check_segment(words: list[str], tokens: list[str], shell: Shell, capsys, monkeypatch) -> None:
    what = kind(tokens)
    if what == "cnnlab":
        check_cnnlab(cnnlab_args(words), shell.cwd, capsys, monkeypatch)
    elif what == "old-script":
        from cnnlab.cli import OLD_SCRIPTS

        verb = OLD_SCRIPTS.get(Path(words[0]).name, "<verb>")
        raise AssertionError(f"{words[0]} is the 0.1 name: write `cnnlab {verb}` (`cnnlab` lists the verbs)")
    elif what == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        missing = [t for t in targets if t not in makefile_targets()]
        assert not missing, f"the Makefile has no target {', '.join(missing)}"
        args = [w.partition("=")[2] for w in words[1:] if w.startswith("ARGS=")]
        if "train" in targets and args:
            check_cnnlab(["train", *shlex.split(args[-1])], shell.cwd, capsys, monkeypatch)
    elif what == "script" and words[1] == "-m":  # python -m benchmarks.startup
        module = shell.cwd / words[2].replace(".", "/")
        assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), f"no module {words[2]}"
    elif what == "script":
        assert (shell.cwd / words[1]).is_file(), f"{words[1]} does not exist"
    elif what == "pytest":
        paths = [w.split("::")[0] for w in words[1:] if w.startswith("tests") or w.endswith(".py")]
        missing = [p for p in paths if not (shell.cwd / p).exists()]
        assert not missing, f"no such test file: {', '.join(missing)}"


def check_line(line: DocLine, capsys, monkeypatch) -> None:
    """Check each simple command of a documented line, in the folder and environment its block set up."""
    shell = Shell(line.shell.cwd, dict(line.shell.env))
    monkeypatch.delenv("CNNLAB_CONFIG_PATH", raising=False)  # only the block's own
    for segment in segments(line.text):
        tokens = tokenize(segment)
        words = command_words(tokens)
        monkeypatch.chdir(shell.cwd)
        for name, value in shell.env.items():
            monkeypatch.setenv(name, value)
        try:
            check_segment(words, tokens, shell, capsys, monkeypatch)
        except (Exception, SystemExit) as err:  # argparse exits 2 on a bad argument
            said = capsys.readouterr().err.strip()[-2000:]
            raise AssertionError(f"{line.where}: `{segment.strip()}`: {type(err).__name__}: {err}"
                                 + (f"\n{said}" if said else "")) from None  # fmt: skip
        follow(shell, words, tokens)


DOC_LINES = all_doc_lines()


@pytest.mark.parametrize("line", [d for d in DOC_LINES if d.checked], ids=lambda d: d.where)
def test_documented_command(line, capsys, monkeypatch):
    check_line(line, capsys, monkeypatch)


@pytest.mark.parametrize("line", verb_examples(), ids=lambda d: d.where)
def test_verb_example(line, capsys, monkeypatch):
    """The examples `cnnlab <verb> --help` shows are checked like the docs' commands."""
    check_line(line, capsys, monkeypatch)


def test_other_commands_are_known():
    """The documented lines that run no cnnlab, make, script or test (pip, git, cd, ls, ...): each program is a
    known one (a typo such as `cnlab train` lands here). Printed, for a reader of `pytest -rP`."""
    others = [d for d in DOC_LINES if not d.checked]
    unknown = []
    for line in others:
        print(f"{line.where}: {line.text}")
        for segment in segments(line.text):
            words = command_words(tokenize(segment))
            if words and Path(words[0]).name not in KNOWN_PROGRAMS:
                unknown.append(f"{line.where}: {words[0]!r} in `{line.text}`")
    assert not unknown, "unknown programs (a typo? else add them to KNOWN_PROGRAMS):\n" + "\n".join(unknown)


MARKDOWN = """\
Text with `cnnlab train` inline: not a command.

```bash
$ cnnlab train experiment=seed_fashion \\
    trainer.max_epochs=3   # a comment
make docs; cd tests/user_project && cnnlab train experiment=my_run
RUN=$(ls -d outputs/runs/*/*_train | tail -1)
cnnlab eval ckpt_path=$RUN/checkpoints/last.ckpt 'data.mean=[0.5]' # a=b#c stays
```

```console
$ cnnlab version
cnnlab 0.1.0 (python 3.11)
```

```text
cnnlab trian  (not a shell block)
```
"""


def test_commands_are_read_as_bash_would(tmp_path):
    """The extraction itself: prompts, continuations, comments, console output, `cd`, substitutions."""
    page = tmp_path / "page.md"
    lines = doc_lines(page, MARKDOWN)
    assert [(d.where.rsplit(":", 1)[1], d.text) for d in lines] == [
        ("4", "cnnlab train experiment=seed_fashion trainer.max_epochs=3"),
        ("6", "make docs; cd tests/user_project && cnnlab train experiment=my_run"),
        ("7", "RUN=$(ls -d outputs/runs/*/*_train | tail -1)"),
        ("8", "cnnlab eval ckpt_path=$RUN/checkpoints/last.ckpt 'data.mean=[0.5]'"),
        ("12", "cnnlab version"),
    ]
    assert [d.checked for d in lines] == [True, True, False, True, True]
    assert lines[3].shell.cwd == USER_PROJECT  # the `cd` of line 6 holds for the rest of its block
    assert segments(lines[1].text) == ["make docs", " cd tests/user_project ", " cnnlab train experiment=my_run"]
    assert tokenize(lines[3].text) == ["cnnlab", "eval", "ckpt_path=$RUN/checkpoints/last.ckpt", "data.mean=[0.5]"]
    assert tokenize("cnnlab layers > layers.txt 2>&1") == ["cnnlab", "layers"]
    assert segments("cnnlab layers &> out.txt && ls | head") == ["cnnlab layers &> out.txt ", " ls ", " head"]
    assert stands_in(["ckpt_path=$RUN/x.ckpt"], ROOT) and stands_in(["data.root=my_images"], ROOT)
    assert not stands_in(["data.root=conf", "model=resnet18", "data.mean=[0.5]"], ROOT)


PROJECT_MARKDOWN = """\
```bash
cd ~/my_project
cnnlab train experiment=my_run
```

```bash
export CNNLAB_CONFIG_PATH=~/my_project/conf
cnnlab train experiment=my_run trainer.max_epochs=2
```
"""


def test_a_project_of_the_users_own_stands_in(tmp_path, capsys, monkeypatch):
    """`cd ~/my_project` or CNNLAB_CONFIG_PATH=~/my_project/conf: tests/user_project/ (the worked example) stands in,
    so its experiment=my_run composes and passes its checks; without them, it is no option."""
    lines = [d for d in doc_lines(tmp_path / "page.md", PROJECT_MARKDOWN) if d.checked]
    assert [d.text.split()[-1] for d in lines] == ["experiment=my_run", "trainer.max_epochs=2"]
    for line in lines:
        check_line(line, capsys, monkeypatch)
    with pytest.raises(AssertionError, match="experiment=my_run is not an option"):
        check_line(DocLine("page.md:1", "cnnlab train experiment=my_run", Shell()), capsys, monkeypatch)


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("cnnlab trian", "is not a verb"),
        ("cnnlab train trainer.max_epoch=3", "trainer.max_epochs"),
        ("cnnlab train model=resnet5O", "not an option of the model group"),
        ("cnnlab train optimizer.lr=-1", "optimizer.lr"),
        ("make no-such-target", "no target no-such-target"),
        ("python benchmarks/no_such.py --x", "does not exist"),
        (".venv/bin/python -m benchmarks.no_such", "no module benchmarks.no_such"),
        ("pytest tests/test_no_such.py -q", "no such test file"),
        ("cnnlab-train data=digits", "0.1 name"),
        ("cnnlab report", "sweep_dir"),
    ],
)
def test_a_wrong_command_fails_where_it_is_written(command, error, capsys, monkeypatch):
    """The checker refuses what the CLI would refuse, naming the line."""
    with pytest.raises(AssertionError) as caught:
        check_line(DocLine("page.md:7", command, Shell()), capsys, monkeypatch)
    message = str(caught.value) + capsys.readouterr().err
    assert message.startswith("page.md:7:") and error in message, message


# -------------------------------------------------------------------------------------------------- quickstart


def quickstart_block(text: str) -> tuple[str, list[tuple[int, str]]] | None:
    """The shell block right after `<!-- quickstart -->`: (language, lines), or None without the marker."""
    if QUICKSTART_MARK not in text:
        return None
    mark = text[: text.index(QUICKSTART_MARK)].count("\n") + 1
    for lang, fence, lines in shell_blocks(text):
        if fence > mark:
            between = text.splitlines()[mark : fence - 1]
            assert not any(t.strip() for t in between), f"line {mark}: {QUICKSTART_MARK} must be right above a block"
            return lang, lines
    raise AssertionError(f"line {mark}: no code block after {QUICKSTART_MARK}")


def quickstart_script(lang: str, lines: list[tuple[int, str]], name: str = "README.md") -> str:
    """The block as one bash script: each `cnnlab train` made tiny, set-up and serving lines skipped, each line
    announced (`### README.md:12`), and a failure named by its line."""
    script = ["set -eo pipefail", f"trap 'echo \"quickstart: {name}:$__line failed: $__cmd\" >&2' ERR"]
    for number, command in block_commands(lang, lines):
        parts = segments(command, keep_operators=True)
        words = command_words(tokenize(parts[0]))
        if words and (Path(words[0]).name in SETUP_OR_SERVING or (cnnlab_args(words) or [""])[0] == "serve"):
            script.append(f"echo {shlex.quote(f'### {name}:{number}: skipped (set-up or serving): {command}')}")
            continue
        if len(parts) == 1 and len(words) == 2 and words[0] == "cd":  # `cd cnnlab` after a clone: here already
            parts = [f"cd {shlex.quote(words[1])} 2>/dev/null || echo 'no {words[1]} here: staying'"]
        for i in range(0, len(parts), 2):
            args = cnnlab_args(command_words(tokenize(parts[i])))
            if args and args[0] == "train":
                parts[i] = parts[i].rstrip() + " " + " ".join(TINY_TRAIN) + (" " if i + 1 < len(parts) else "")
        command = "".join(parts)
        script += [f"__line={number}; __cmd={shlex.quote(command)}", f"echo '### {name}:{number}: '\"$__cmd\"",
                   command]  # fmt: skip
    return "\n".join(script) + "\n"


def run_quickstart(lang: str, lines: list[tuple[int, str]], work: Path, name: str = "README.md") -> str:
    """Run the quickstart in `work`, an empty folder (as the README promises), with the venv's bin/ first on PATH.
    Returns the output; fails naming the line that failed."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    env.pop("CNNLAB_ROOT", None)
    env.pop("CNNLAB_CONFIG_PATH", None)
    script = quickstart_script(lang, lines, name)
    result = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the quickstart failed (exit {result.returncode}):\n{output[-6000:]}"
    return output


PROOF = """\
# A page of our own

<!-- quickstart -->
```bash
pip install -e .   # set-up: skipped
cd cnnlab          # a checkout's folder: stays here
cnnlab train data=digits model.backbone.padding=1 trainer.max_epochs=1
RUN=$(ls -d outputs/runs/*/*_train | tail -1)
ls $RUN/checkpoints
cnnlab eval ckpt_path=$RUN/checkpoints/last.ckpt
tensorboard --logdir outputs   # serving: skipped
```
"""


def test_the_quickstart_script_is_the_block_made_tiny():
    lang, lines = quickstart_block(PROOF)
    script = quickstart_script(lang, lines, "proof.md")
    assert "### proof.md:5: skipped (set-up or serving): pip install -e ." in script
    assert "### proof.md:11: skipped (set-up or serving): tensorboard --logdir outputs" in script
    assert "\ncd cnnlab 2>/dev/null || echo 'no cnnlab here: staying'\n" in script
    tiny = " ".join(TINY_TRAIN)
    assert f"\ncnnlab train data=digits model.backbone.padding=1 trainer.max_epochs=1 {tiny}\n" in script
    assert "\ncnnlab eval ckpt_path=$RUN/checkpoints/last.ckpt\n" in script
    assert quickstart_block("no marker here") is None


@pytest.mark.slow
def test_the_quickstart_runner_runs_a_block_of_its_own(tmp_path):
    """The machinery, proven on a block of its own: a 1-epoch digits run, then its checkpoint evaluated."""
    lang, lines = quickstart_block(PROOF)
    output = run_quickstart(lang, lines, tmp_path, "proof.md")
    assert "### proof.md:10: cnnlab eval" in output and "test/acc" in output, output[-3000:]
    assert list((tmp_path / "outputs" / "runs").glob("*/*_train/checkpoints/last.ckpt"))


@pytest.mark.slow
def test_the_readme_quickstart_runs(tmp_path, request):
    """README.md's quickstart, every line, at tiny size (1 epoch on 500 images of Fashion-MNIST)."""
    block = quickstart_block(README.read_text(encoding="utf-8"))
    if block is None:
        pytest.skip(f"README.md has no {QUICKSTART_MARK} marker above its quickstart block yet")
    request.getfixturevalue("fashion_dir")  # the dataset the quickstart trains on
    run_quickstart(*block, tmp_path)


# ------------------------------------------------------------------------------------------------------- links


def slugs(heading: str) -> set[str]:
    """A heading's anchor as GitHub makes it and as mkdocs (Python-Markdown's toc) makes it."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip()
    github = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    mkdocs = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_text).strip().lower())
    return {github, mkdocs}


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file: its headings (outside code blocks, duplicates numbered) and `<a id>`s."""
    text = path.read_text(encoding="utf-8")
    chars = list(text)
    for a, b in figures.code_ranges(text):
        chars[a:b] = re.sub(r"[^\n]", " ", text[a:b])
    found, seen = set(), {}
    for match in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", "".join(chars), re.M):
        for slug in slugs(match[1]):
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if not count else f"{slug}-{count}")
    found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line, target) of each link of a markdown file outside code: inline, reference definitions, HTML."""
    prose = figures.prose(path.read_text(encoding="utf-8"))
    patterns = (r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)",
                r"(?:href|src)=\"([^\"]+)\"")  # fmt: skip
    for pattern in patterns:
        for match in re.finditer(pattern, prose, re.M):
            yield prose.count("\n", 0, match.start()) + 1, match[1]


def test_readme_links_exist():
    """Every relative link of README.md names a file or folder of the repository (and an anchor of it that
    exists). README.md is not part of the mkdocs site, so `make docs` does not check it."""
    if not README.is_file():
        pytest.skip("no README.md")
    broken = []
    for line, target in links(README):
        if re.match(r"^[a-z][\w+.-]*:", target, re.I):
            continue  # https:, mailto: ...
        name, _, anchor = target.partition("#")
        path = (README.parent / name).resolve() if name else README
        if not path.exists():
            broken.append(f"README.md:{line}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"README.md:{line}: {target} (no heading #{anchor} in {rel(path)})")
    assert not broken, "\n".join(broken)


# ------------------------------------------------------------------------------------------------------- verbs


def verb_pages() -> list[tuple[str, str]]:
    from cnnlab.cli import verbs

    return [(name, verb.docs) for name, verb in verbs().items()]


@pytest.mark.parametrize(("verb", "page"), verb_pages(), ids=[v for v, _ in verb_pages()])
def test_each_verb_names_a_page_that_exists(verb, page):
    """`cnnlab <verb> --help` ends with `more: docs/<page>.md`: the page exists (and so does its anchor)."""
    name, _, anchor = page.partition("#")
    assert (ROOT / name).is_file(), f"cnnlab {verb}: docs={page!r} does not exist"
    if anchor:
        assert anchor in anchors(ROOT / name), f"cnnlab {verb}: no heading #{anchor} in {name}"


def printed_refusals(text: str) -> list[tuple[str, str]]:
    """The `$ cnnlab ...` examples of docs/errors.md's "As they print" block whose output is cnnlab's own up-front
    refusal (`cnnlab <verb>: error: ...`), each with the text shown under it. (The log lines below them come from
    checks made in-process, after the import of torch: their timestamps are the day's.)"""
    block = text.split("## As they print", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    examples = []
    for chunk in block.strip().split("\n\n"):
        command, *shown = chunk.splitlines()
        if command.startswith("$ cnnlab") and shown and shown[0].startswith("cnnlab"):
            examples.append((command[2:], "\n".join(shown)))
    return examples


ERRORS_PAGE = ROOT / "docs" / "errors.md"


@pytest.mark.parametrize(("command", "shown"), printed_refusals(ERRORS_PAGE.read_text()),
                         ids=lambda v: v if v.startswith("cnnlab") and "\n" not in v else None)  # fmt: skip
def test_a_refusal_prints_as_the_docs_show_it(command, shown, tmp_path, capsys, monkeypatch):
    """The refusals docs/errors.md quotes are what the command prints today, word for word."""
    from cnnlab.cli import main

    monkeypatch.chdir(tmp_path)
    args = shlex.split(command)[1:]
    for arg in args:  # a run dir the example names as the wrong thing to pass: made here, as the docs' reader had it
        key, _, value = arg.partition("=")
        if key == "ckpt_path" and value.startswith("outputs/runs/") and not value.endswith(".ckpt"):
            (tmp_path / value).mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == shown.strip()
