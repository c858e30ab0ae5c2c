"""Results with their spread: the mean of replicate runs with a Student-t confidence interval, and the paired
difference of two configurations over matched seeds / folds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


def t_quantile(dof: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t critical value (2.776 for n=5 at 95%)."""
    from scipy.stats import t  # lazy: scipy.stats costs ~0.4 s to import; only summaries need it

    return float(t.ppf(0.5 + confidence / 2, dof))


@dataclass(frozen=True)
class Spread:
    """n values: mean, sample standard deviation, the 95% interval of the mean (Student t), min and max. With
    n = 1 the deviation and interval are unknown (nan), never zero."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    min: float
    max: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def cell(self, digits: int = 4) -> str:
        """`0.9268 +- 0.0012 (n=3)`: the mean and the interval's half-width."""
        if self.n == 1:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} +- {self.half_width:.{digits}f} (n={self.n})"


def spread(values: Sequence[float]) -> Spread:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread of no values")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan, mean, mean)
    sd = statistics.stdev(values)
    half = t_quantile(len(values) - 1) * sd / math.sqrt(len(values))
    return Spread(len(values), mean, sd, mean - half, mean + half, min(values), max(values))


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    metric: str
    difference: Spread  # of a - b over the matched replicates
    matched: list[str]  # the replicate keys (seed / fold) both have

    def verdict(self, scale: float = 100.0, unit: str = "points") -> str:
        """Plain words: which is better and by how much, or that n matched runs cannot tell them apart."""
        d, n = self.difference, self.difference.n
        if n < 2:
            return f"no difference detectable with n={n} matched run(s): replicate with seed='range(3)'"
        if d.low > 0 or d.high < 0:
            better, worse = (self.a, self.b) if d.mean > 0 else (self.b, self.a)
            return (f"{better} is better than {worse} on {self.metric} by {abs(d.mean) * scale:.2f} +- "
                    f"{d.half_width * scale:.2f} {unit} (95% interval of the paired difference, n={n})")  # fmt: skip
        return (f"no difference detectable with n={n}: {self.a} - {self.b} on {self.metric} = "
                f"{d.mean * scale:.2f} +- {d.half_width * scale:.2f} {unit}, an interval that holds 0")  # fmt: skip


def paired(a: dict[str, float], b: dict[str, float], names: tuple[str, str], metric: str) -> Comparison:
    """`a` and `b` map a replicate key (e.g. `seed=1`) to a run's value; only keys both have are compared."""
    matched = sorted(set(a) & set(b))
    if not matched:
        raise ValueError(f"{names[0]} and {names[1]} share no seed / fold: nothing to pair")
    return Comparison(names[0], names[1], metric, spread([a[k] - b[k] for k in matched]), matched)
