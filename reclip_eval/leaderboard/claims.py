"""A claim of the paper tested on the miniature: its statistics over seeds and its verdict.

A miniature cell is a mean over a few seeds, and the seed-to-seed spread of a toy model is often as large as the
effects the paper reports. So a claim ("RECLIP-64 matches CLIP at full resolution") is judged by where the 95%
confidence interval of the difference d = mean(a) - mean(b) lies against the claim's margin, and is
"inconclusive" while the interval straddles it, instead of by the sign of d.

All intervals are Student's t at 95%:
- one cell: mean ± t(0.975, n - 1) * s / sqrt(n), n = the seeds;
- two sets of checkpoints (other runs): Welch's interval for a difference of means (variances not assumed equal),
  with the Welch-Satterthwaite degrees of freedom;
- two sources of one row with the same seeds (Table 5's before/after finetune are the same runs): the paired
  interval on the per-seed differences, which removes the variation the two share.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
REPRODUCES, DOES_NOT_REPRODUCE, INCONCLUSIVE = "reproduces", "does not reproduce", "inconclusive"


@dataclass(frozen=True)
class Side:
    """One side of a claim: a row of the miniature table, optionally one of its named sources."""

    row: str
    source: str | None = None

    def column(self, metric: str) -> str:
        """The column key of this side's cells: a named source prefixes the metric (Table 5's before_finetune/...),
        as the table's columns do."""
        return f"{self.source}/{metric}" if self.source else metric

    def describe(self) -> str:
        return f'"{self.row}"' + (f" ({self.source})" if self.source else "")


@dataclass(frozen=True)
class Claim:
    """A claim as leaderboards/miniature.yaml states it (a table's `claims:`)."""

    claim: str  # the paper's claim, in words
    paper: str  # where the paper makes it
    metric: str  # a column key of the table (for a side with a source: the key after the source's prefix)
    a: Side
    b: Side
    expect: str  # a name in EXPECTATIONS
    margin: float = 0.0  # points


@dataclass(frozen=True)
class Interval:
    """An estimate and its 95% CI; lo and hi are None with too few seeds for an interval."""

    estimate: float
    lo: float | None = None
    hi: float | None = None

    def text(self) -> str:
        """`mean [lo, hi]` (2 decimals), or the mean alone without an interval."""
        return f"{self.estimate:.2f}" + ("" if self.lo is None else f" [{self.lo:.2f}, {self.hi:.2f}]")


def t_quantile(df: float) -> float:
    """Student's t quantile of the two-sided 95% interval; df need not be an integer (Welch)."""
    from scipy.stats import t  # lazily: importing scipy.stats costs a third of a second

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def mean_interval(values: Sequence[float]) -> Interval:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean)
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """mean(a) - mean(b) with Welch's 95% CI (unpaired seeds)."""
    d = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Interval(d)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return Interval(d, d, d)  # no spread on either side: the degrees of freedom would be 0 / 0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(df) * math.sqrt(va + vb)
    return Interval(d, d - half, d + half)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """mean(a - b) over seeds with the paired 95% CI; a[i] and b[i] are the same seed."""
    return mean_interval([x - y for x, y in zip(a, b, strict=True)])


def _number(x: float) -> str:
    return f"{x + 0.0:g}"  # + 0.0 turns -0.0 into 0.0


@dataclass(frozen=True)
class Expectation:
    """What a claim expects of d = a - b, and the intervals that settle it: reproduced when the whole CI satisfies
    it, not reproduced when the whole CI violates it."""

    name: str
    condition: str  # in symbols; {m} is the margin, {neg} minus the margin
    holds: Callable[[float, float, float], bool]  # (lo, hi, margin)
    fails: Callable[[float, float, float], bool]

    def reads(self, margin: float) -> str:
        return self.condition.format(m=_number(margin), neg=_number(-margin))

    def judge(self, lo: float, hi: float, margin: float) -> str:
        if self.holds(lo, hi, margin):
            return REPRODUCES
        if self.fails(lo, hi, margin):
            return DOES_NOT_REPRODUCE
        return INCONCLUSIVE


EXPECTATIONS: dict[str, Expectation] = {}


def register_expectation(expectation: Expectation) -> Expectation:
    if expectation.name in EXPECTATIONS:
        raise ValueError(f"expectation {expectation.name!r} is registered twice")
    EXPECTATIONS[expectation.name] = expectation
    return expectation


# "a is no worse than b", within the margin (RECLIP matches CLIP for less compute).
register_expectation(Expectation("at_least", "a - b >= {neg}",
                                 lambda lo, hi, m: lo >= -m, lambda lo, hi, m: hi < -m))
# "a beats b" by more than the margin (the finetune helps).
register_expectation(Expectation("more", "a - b > {m}",
                                 lambda lo, hi, m: lo > m, lambda lo, hi, m: hi <= m))
# "a and b are the same" up to the margin (text length does not matter).
register_expectation(Expectation("within", "|a - b| <= {m}",
                                 lambda lo, hi, m: -m <= lo and hi <= m, lambda lo, hi, m: lo > m or hi < -m))


def verdict(claim: Claim, a: Sequence[float], b: Sequence[float], *, paired: bool) -> str:
    """The verdict line of `claim` from the per-seed values (%) of its two sides, e.g.
    `reproduces: +1.23 points, 95% CI [0.40, 2.06] (Welch, 3 vs 3 seeds)`."""
    difference = (paired_difference if paired else welch_difference)(a, b)
    if difference.lo is None or difference.hi is None:
        return f"{INCONCLUSIVE}: {difference.estimate:+.2f} points (too few seeds for an interval)"
    outcome = EXPECTATIONS[claim.expect].judge(difference.lo, difference.hi, claim.margin)
    method = f"paired, {len(a)} seeds" if paired else f"Welch, {len(a)} vs {len(b)} seeds"
    return (f"{outcome}: {difference.estimate:+.2f} points, 95% CI [{difference.lo:.2f}, {difference.hi:.2f}] "
            f"({method})")
