"""`cnnlab <verb> [overrides]`: the one command. `cnnlab` lists the verbs, `cnnlab <verb> --help` shows one.

Before a Hydra verb runs, its config is composed and checked here, without torch: a typo in a key, an unknown
group option, a bad value or a missing required key is answered in about a second, with the closest names, exit
code 2 and nothing written. Only then does the verb's work (torch, Lightning) start, through Hydra's own main.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnlab import __version__
from cnnlab.commands import Verb, description
from cnnlab.errors import CnnlabError
from cnnlab.utils.cli import (
    USER_ERROR_EXIT_CODE,
    exit_code,
    quiet_third_party_noise,
    reports_user_errors,
)
from cnnlab.utils.config import (
    CONF_PATH,
    compose_for_check,
    config_file,
    dotted_keys,
    group_options,
    use_user_configs,
)
from cnnlab.utils.rundir import register_resolvers
from hydra_plugins.cnnlab_optuna.sweeper import OptunaSweeper

VERB_NAMES = ("train", "eval", "predict", "export", "explain", "layers", "report", "shards", "study")
# The console scripts of 0.1, kept for one release: each says what to type instead.
OLD_SCRIPTS = {"cnnlab-train": "train", "cnnlab-eval": "eval", "cnnlab-predict": "predict", "cnnlab-export": "export",
               "cnnlab-explain": "explain", "cnnlab-summary": "layers", "cnnlab-summarize": "report",
               "cnnlab-optimize": "shards"}  # fmt: skip
# Hydra's flags that take a value, and those after which nothing runs (no check needed beyond composing).
FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun")  # fmt: skip
PRINT_ONLY_FLAGS = ("--cfg", "-c", "--info", "-i", "--hydra-help", "--shell-completion", "-sc")
# Flags whose meaning is Hydra's alone (another config dir or name, its own help and completion): passed on unchecked.
HYDRA_ONLY_FLAGS = ("--info", "-i", "--hydra-help", "--shell-completion", "-sc", "--config-dir", "-cd",
                    "--config-path", "-cp", "--config-name", "-cn", "--experimental-rerun")  # fmt: skip
TIMM_HINT = "any timm model works through model=timm model.backbone.name=<timm name>"
MAX_SWEEP_VALUES_CHECKED = 50
INTERNAL_KEYS = ("task_name",)  # which verb a config is; no user sets it


def verbs() -> dict[str, Verb]:
    """Every verb, by name, in the order `cnnlab` lists them (their modules are light: no torch)."""
    return {name: importlib.import_module(f"cnnlab.commands.{name}").VERB for name in VERB_NAMES}


LIBRARIES = ("torch", "torchvision", "lightning", "hydra-core", "timm", "torchmetrics")


def version_line() -> str:
    """cnnlab's version and its main libraries' (read from their metadata: nothing is imported)."""
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"cnnlab {__version__} (python {sys.version.split()[0]}; {', '.join(found)})"


def overview() -> str:
    """What `cnnlab` alone prints: the verbs, one line each, and where to go next."""
    table = verbs()
    width = max(map(len, table))
    lines = ["usage: cnnlab <verb> [key=value ...] [--help]", "", "verbs:"]
    lines += [f"  {name:<{width}}  {verb.summary}" for name, verb in table.items()]
    lines += [f"  {'version':<{width}}  the installed cnnlab and its main libraries", "",
              "cnnlab <verb> --help     what a verb does, examples, its groups and keys",
              "cnnlab <verb> --cfg job  the composed config, without running it",
              "docs: README.md and docs/ (docs/index.md)"]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """The `cnnlab` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(overview())
        return
    if args[0] in ("version", "--version", "-V"):
        print(version_line())
        return
    table = verbs()
    if args[0] not in table:
        close = difflib.get_close_matches(args[0], [*table, "version"], n=1)
        hint = f" (did you mean `cnnlab {close[0]}`?)" if close else ""
        _refuse("cnnlab", f"{args[0]!r} is not a verb{hint}. `cnnlab` lists them: {', '.join(table)}.")
    run_verb(table[args[0]], args[1:])


def old_script() -> None:
    """The 0.1 console scripts (`cnnlab-train` ...): the same verb, with a note of its new name."""
    name = Path(sys.argv[0]).name
    verb = OLD_SCRIPTS.get(name, "train")
    print(f"note: {name} is now `cnnlab {verb}`; the old name goes in the next release.", file=sys.stderr)
    run_verb(verbs()[verb], sys.argv[1:])


def run_verb(verb: Verb, args: list[str]) -> None:
    """Check, then run `verb` with `args`; exits with 2 for a user error, 1 when part of the work failed."""
    if verb.config is None:
        verb.run(args)
        return
    if "-h" in args or "--help" in args:
        try:
            print(verb_help(verb, [a for a in args if a not in ("-h", "--help")]))
        except CnnlabError as err:
            _refuse(f"cnnlab {verb.name}", str(err))
        return
    overrides, flags = split_flags(args)
    if not any(f in flags for f in HYDRA_ONLY_FLAGS):
        try:
            preflight(verb, overrides, values=not any(f in flags for f in PRINT_ONLY_FLAGS))
        except CnnlabError as err:
            _refuse(f"cnnlab {verb.name}", str(err))
    run_with_hydra(verb, args)


def run_with_hydra(verb: Verb, args: list[str]) -> None:
    """`verb`'s work through Hydra's own main (run dirs, sweeps, launchers, `--cfg`), then its exit code."""
    register_resolvers()
    quiet_third_party_noise()
    use_user_configs()
    Plugins.instance().register(OptunaSweeper)  # an editable install hides hydra_plugins/ from Hydra's own scan
    typed = list(sys.argv)
    sys.argv = [typed[0], *args]  # what Hydra parses: the overrides, without the verb

    def task(cfg: DictConfig) -> object:
        # Lightning's DDP starts each further rank with the command as typed (sys.argv, the verb included).
        sys.argv = typed
        return reports_user_errors(verb.run)(cfg)

    task.__module__ = verb.run.__module__  # Hydra names the job (and its log file) after the verb's module
    task.__name__ = task.__qualname__ = verb.run.__name__
    hydra.main(version_base="1.3", config_path=CONF_PATH, config_name=verb.config)(task)()
    if exit_code():
        sys.exit(exit_code())


def _refuse(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """The overrides, and Hydra's flags with their values (`--cfg job`, `-m`)."""
    overrides, flags, it = [], [], iter(args)
    for arg in it:
        if arg.startswith("-"):  # an override never does (`~key` deletes, `+key` adds)
            flag = arg.split("=", 1)[0]
            flags.append(flag)
            if flag in FLAGS_WITH_VALUE and "=" not in arg:
                flags.append(next(it, ""))
        else:
            overrides.append(arg)
    return overrides, flags


def preflight(verb: Verb, overrides: list[str], values: bool = True) -> None:
    """Compose `verb`'s config with `overrides` and check every value, or raise one CnnlabError that says what to
    type instead. A sweep (`a=1,2`) is checked value by value: a bad value in the third job fails now, not then."""
    for variant in _sweep_variants(overrides):
        cfg = _compose(verb, variant)
        if values and verb.check is not None:
            verb.check(cfg)


def _parse(overrides: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        message = str(err).split("\nSee https://", 1)[0]
        raise CnnlabError(
            f"cannot read the override(s) {' '.join(overrides)}: {message}. Write key=value, e.g. "
            "optimizer.lr=3e-4; quote values with spaces or brackets: 'data.mean=[0.5]'."
        ) from None


def _sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The overrides of a single run for each value of each sweep (the other sweeps at their first value)."""
    parsed = _parse(overrides)
    swept = [(i, o) for i, o in enumerate(parsed) if o.is_sweep_override()]
    if not swept:
        return [overrides]
    firsts = list(overrides)
    choices: dict[int, list[str]] = {}
    for index, override in swept:
        values = [_as_text(v) for v in _sweep_values(override)]
        if not values:  # an interval (Optuna's) or a glob: the sweeper picks; checked when each job starts
            firsts[index] = None  # type: ignore[call-overload]
            continue
        choices[index] = values[:MAX_SWEEP_VALUES_CHECKED]
        firsts[index] = f"{override.get_key_element()}={choices[index][0]}"
    base = [o for o in firsts if o is not None]
    variants = [base]
    for index, values in choices.items():
        key = parsed[index].get_key_element()
        for value in values[1:]:
            variant = [o for i, o in enumerate(firsts) if o is not None and i != index]
            variants.append([*variant, f"{key}={value}"])
    return variants


def _sweep_values(override: Override) -> list:
    try:
        return list(override.sweep_iterator())
    except Exception:
        return []


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return str(value).lower() if isinstance(value, bool) else ("null" if value is None else str(value))


def _compose(verb: Verb, overrides: list[str]) -> DictConfig:
    try:
        return compose_for_check(verb.config, overrides)
    except MissingConfigException as err:
        raise CnnlabError(_missing_option_message(verb, err, overrides)) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise CnnlabError(_composition_message(verb, err, overrides)) from None


def _missing_option_message(verb: Verb, err: MissingConfigException, overrides: list[str]) -> str:
    """`model=resnet5O`: which group, the closest options, and (for a model) that any timm name works."""
    found = re.search(r"Could not (?:find|load) '([^']+)'", str(err))
    path = found.group(1) if found else ""
    group, _, option = path.rpartition("/")
    if not group:
        return str(err).split("\nConfig search path", 1)[0]
    options = group_options(group)
    close = difflib.get_close_matches(option, options, n=3, cutoff=0.5)
    message = f"{group}={option} is not an option of the {group} group"
    message += f" (did you mean {' or '.join(close)}?)" if close else ""
    message += f". Options: {', '.join(options)}" if options else f". This verb has no {group} group"
    if group == "model":
        message += f"; {TIMM_HINT}"
    return message + f". Your own: conf/{group}/<name>.yaml beside where you run (docs/extending.md)."


def _composition_message(verb: Verb, err: Exception, overrides: list[str]) -> str:
    """A key that does not exist (`trainer.max_epoch=3`): the closest keys of its node, and how to add one."""
    text = str(err)
    exists = re.search(r"Could not append to config\. An item is already at '([^']+)'", text)
    if exists:
        return f"{exists.group(1)} already exists: set it with {exists.group(1)}=<value> (no `+`)."
    found = re.search(r"Could not override '([^']+)'", text)
    if not found:
        return text.split("\nSee https://", 1)[0]
    key = found.group(1)
    parent, _, leaf = key.rpartition(".")
    close = _closest_keys(verb, [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")], parent, leaf)
    where = f"the {parent} group" if parent else f"cnnlab {verb.name}'s config"
    message = f"{key} is not a key of {where}"
    message += f" (did you mean {', '.join(close)}?)" if close else ""
    if parent == "trainer":
        message += "; any other Lightning Trainer argument can be added with +trainer.<argument>=<value>"
    else:
        message += f"; `cnnlab {verb.name} --help{' ' + parent.split('.')[0] if parent else ''}` lists the keys"
    return message + "."


def _closest_keys(verb: Verb, others: list[str], parent: str, leaf: str) -> list[str]:
    """The keys of `parent` closest to `leaf`, else the keys of that name elsewhere in the config, composed once
    without the misspelt override."""
    try:
        cfg = compose_for_check(verb.config, others)
    except (HydraException, OmegaConfBaseException):  # another override is broken too: no suggestion
        return []
    node = OmegaConf.select(cfg, parent) if parent else cfg
    known = [str(k) for k in node if k != "hydra"] if OmegaConf.is_dict(node) else []
    close = [f"{parent}.{c}" if parent else c for c in difflib.get_close_matches(leaf, known, n=3, cutoff=0.6)]
    everywhere = [k for k in dotted_keys(cfg) if not k.startswith("hydra.")]
    return close or keys_named_like(leaf, everywhere)


def keys_named_like(leaf: str, keys: list[str]) -> list[str]:
    """The dotted keys elsewhere in the config whose last part is (close to) `leaf`: `max_epochs=3` at the top is
    `trainer.max_epochs`, `model.lr` is `optimizer.lr`."""
    by_leaf: dict[str, list[str]] = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    close = difflib.get_close_matches(leaf, list(by_leaf), n=2, cutoff=0.8)
    return [key for name in close for key in by_leaf[name]][:3]


def verb_help(verb: Verb, args: list[str]) -> str:
    """`cnnlab <verb> --help [group]`: what it does, examples, its groups with their options, its keys with their
    comments (required ones marked), where to read more. With a group: that group's keys, as composed."""
    overrides, _ = split_flags(args)
    groups = [o for o in overrides if "=" not in o]
    overrides = [o for o in overrides if "=" in o]
    if groups:
        return _group_help(verb, groups[0], overrides)
    doc = importlib.import_module(f"cnnlab.commands.{verb.name}").__doc__ or ""
    lines = [f"usage: cnnlab {verb.name} [key=value ...] [group=option ...] [-m] [--cfg job]", "",
             description(doc), "", "examples:", *(f"  {e}" for e in verb.examples)]  # fmt: skip
    cfg = _compose(verb, overrides)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    # Hydra lists the choices last default first: reversed, they read in the order of the config's defaults list.
    own = {g: c for g, c in reversed(list(choices.items())) if not g.startswith("hydra") and g != "paths"}
    if own:
        lines += ["", "groups (group=option; `--help <group>` shows its keys):"]
        width = max(map(len, own))
        for group, choice in own.items():
            options = group_options(group)
            shown = ", ".join(f"[{o}]" if o == choice else o for o in options)
            lines.append(f"  {group:<{width}}  {shown}" + ("" if choice else "  (none chosen)"))
    lines += ["", "keys:"]
    lines += [_key_line(key, value, comment) for key, value, comment in _commented_keys(verb.config, cfg, "")]
    lines += ["", "paths: paths.root_dir (default: where you run), paths.data_dir, paths.log_dir (runs go under it)",
              "", f"the composed config: cnnlab {verb.name} --cfg job [overrides]", f"more: {verb.docs}"]  # fmt: skip
    return "\n".join(lines)


def _group_help(verb: Verb, group: str, overrides: list[str]) -> str:
    cfg = _compose(verb, overrides)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    if group not in choices or group.startswith("hydra"):
        known = [g for g in choices if not g.startswith("hydra")]
        close = difflib.get_close_matches(group, known, n=1)
        raise CnnlabError(f"{group!r} is not a group of this verb" + (f" (did you mean {close[0]}?)" if close else "")
                          + f"; its groups: {', '.join(known)}")  # fmt: skip
    choice = choices[group]
    options = group_options(group)
    lines = [f"cnnlab {verb.name} {group}=<option>: {', '.join(options)} (now: {choice})", ""]
    if choice is None:
        return "\n".join([*lines, f"none chosen; e.g. `cnnlab {verb.name} {group}={options[0]} --help {group}`"])
    lines.append(f"keys of {group}={choice} (conf/{group}/{choice}.yaml), as composed:")
    comments = inherited_comments(group, choice)
    node = cfg[group]
    for key in dotted_keys(node):
        value = OmegaConf.select(node, key, default=None, throw_on_resolution_failure=False)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_list(value) else value
        lines.append(_key_line(f"{group}.{key}", value, comments.get(key, "")))
    return "\n".join(lines)


def _key_line(key: str, value: object, comment: str) -> str:
    shown = "(required)" if comment.lower().startswith("required") else as_typed(value)
    return f"  {key} = {shown}" + (f"    # {comment}" if comment else "")


def as_typed(value: object) -> str:
    """A value as it is typed in an override: null, true, 3e-4, [32, 64], {a: 1}."""
    if value is None or isinstance(value, bool):
        return _as_text(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(as_typed(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {as_typed(v)}" for k, v in value.items()) + "}"
    return str(value)


def _commented_keys(config: str, cfg: DictConfig, node: str) -> list[tuple[str, object, str]]:
    """(dotted key, composed value, the comment beside it in the YAML file) of each key that file sets."""
    rows = []
    for key, comment in yaml_comments(config).items():
        full = f"{node}.{key}" if node else key
        if full.split(".")[0] in ("defaults", "hydra") or full in INTERNAL_KEYS:
            continue
        value = OmegaConf.select(cfg, full, default=None, throw_on_resolution_failure=False)
        if OmegaConf.is_dict(value):
            continue
        if OmegaConf.is_list(value):
            value = OmegaConf.to_container(value, resolve=True)
        rows.append((full, value, comment))
    return rows


KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


DEFAULTS_ENTRY = re.compile(r"^\s+-\s+([\w-]+)\s*(#.*)?$")


def inherited_comments(group: str, option: str) -> dict[str, str]:
    """The comments of `conf/<group>/<option>.yaml` and of the options of the same group it builds on (its
    `defaults: [- mnist, - _self_]`), the option's own last: every key of the composed option has its comment."""
    path = config_file(f"{group}/{option}")
    comments: dict[str, str] = {}
    if path is None:
        return comments
    in_defaults = False
    for line in path.read_text().splitlines():
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        entry = DEFAULTS_ENTRY.match(line) if in_defaults else None
        if entry and entry.group(1) != "_self_" and entry.group(1) != option:
            comments.update(inherited_comments(group, entry.group(1)))
        in_defaults = in_defaults and (entry is not None or not line.strip())
    own = {k: c for k, c in yaml_comments(f"{group}/{option}").items() if k != "defaults"}
    return {**comments, **{k: c for k, c in own.items() if c or k not in comments}}


def yaml_comments(config: str) -> dict[str, str]:
    """The keys of `conf/<config>.yaml` (dotted when nested) and the comment that follows each, continuation lines
    included: what `--help` shows. Read from the file a user would open (theirs first, then cnnlab's)."""
    path = config_file(config)
    if path is None:
        return {}
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in path.read_text().splitlines():
        match = KEY_LINE.match(line)
        if match:
            indent = len(match["indent"])
            stack = [(i, k) for i, k in stack if i < indent]
            key = ".".join([*(k for _, k in stack), match["key"]])
            stack.append((indent, match["key"]))
            comment = _comment_of(match["rest"])
            comments[key] = comment
            last = key
        elif line.strip().startswith("#") and last and line.startswith(" "):
            comments[last] = (comments[last] + " " + line.strip().lstrip("#").strip()).strip()
        else:
            last = None if not line.strip() or not line.startswith(" ") else last
    return comments


def _comment_of(rest: str) -> str:
    """The `# ...` part of a YAML value, ignoring a `#` inside quotes or braces (`${now:%H}` has none)."""
    quote = None
    for i, char in enumerate(rest):
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        elif char == "#" and quote is None and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1 :].strip()
    return ""
