"""A search space in Hydra's sweep syntax (what `hydra.sweeper.params` holds) as Optuna distributions.

`optimizer.lr: tag(log, interval(1e-4, 1e-2))` -> a log-uniform float; `interval(0, 0.6)` -> a uniform float;
`int(interval(1, 5))` -> an integer; `range(1, 10, 2)` -> an integer on that grid; `choice(32, 64)` or `32,64` ->
a categorical; a single value is fixed for every trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna samples (`distributions`) and what every trial gets as it is (`fixed`, as overrides)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """One trial's overrides: the fixed ones, then its sampled values in the space's order."""
        return [*self.fixed, *(f"{key}={override_value(params[key])}" for key in self.distributions)]


def override_value(value: Any) -> str:
    """A sampled value as Hydra reads it back: `true`, `null`, `0.001`, `resnet18`."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value)


def search_space(params: Mapping[str, Any] | None, arguments: list[str] = ()) -> SearchSpace:
    """The space of `hydra.sweeper.params`, with the command line's sweep overrides (`optimizer.lr=1e-3,3e-3`) as
    categoricals and its other overrides fixed."""
    parser = OverridesParser.create()
    entries = [(str(key), str(value) if not isinstance(value, str) else value) for key, value in (params or {}).items()]
    distributions: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for key, text in entries:
        distribution = _distribution(key, _parse(parser, f"{key}={text}", f"hydra.sweeper.params.{key}"))
        if distribution is None:
            fixed.append(f"{key}={text}")
        else:
            distributions[key] = distribution
    for argument in arguments:
        override = _parse(parser, argument, argument)
        key = override.get_key_element()
        distribution = _distribution(key, override) if override.is_sweep_override() else None
        if distribution is None:
            fixed.append(argument)
        else:
            distributions[key] = distribution
    return SearchSpace(distributions, fixed)


def _parse(parser: OverridesParser, text: str, where: str) -> Any:
    try:
        return parser.parse_override(text)
    except HydraException as err:
        raise CnnlabError(f"{where}: cannot read {text!r} as a search range ({str(err).splitlines()[0]}). Write e.g. "
                          "'tag(log, interval(1e-4, 1e-2))', 'interval(0.0, 0.6)', 'int(interval(1, 5))', "
                          "'range(1, 10)' or 'choice(32, 64, 128)'.") from None  # fmt: skip


def _distribution(key: str, override: Any) -> BaseDistribution | None:
    """The override's distribution; None for a single value (fixed for every trial)."""
    if not override.is_sweep_override():
        return None
    sweep = override.value()
    log = "log" in (sweep.tags or set())
    if isinstance(sweep, ChoiceSweep):
        values = [_choice(key, v) for v in sweep.list]
        return CategoricalDistribution(values)
    if isinstance(sweep, RangeSweep):
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
            return IntDistribution(int(sweep.start), int(sweep.stop) - 1, step=int(sweep.step))
        return CategoricalDistribution(list(sweep))  # a float grid: its values, as Hydra's range lists them
    if isinstance(sweep, IntervalSweep):
        if sweep.start >= sweep.end or (log and sweep.start <= 0):
            raise CnnlabError(f"hydra.sweeper.params.{key}: interval({sweep.start}, {sweep.end}) is empty or, "
                              "with tag(log, ...), not positive: give a start below the end (above 0).")  # fmt: skip
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise CnnlabError(f"hydra.sweeper.params.{key}: {type(sweep).__name__} cannot be searched by Optuna. Use "
                      "choice(...), interval(...), range(...) or tag(log, interval(...)).")  # fmt: skip


def _choice(key: str, value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise CnnlabError(
        f"hydra.sweeper.params.{key}: the choice {value!r} is a {type(value).__name__}; a searched "
        "choice must be a number, a string, a bool or null. Quote a list: choice('[16,32]', '[32,64]')."
    )
