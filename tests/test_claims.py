"""The statistics and verdicts of the paper's claims on the miniature (reclip_eval/leaderboard/claims.py): intervals
against a hand computation and against scipy's t-tests, and every branch of every expectation."""

import pytest
from scipy import stats

from reclip_eval.leaderboard.claims import (
    EXPECTATIONS,
    Claim,
    Side,
    mean_interval,
    paired_difference,
    verdict,
    welch_difference,
)


def _claim(expect: str, margin: float = 0.0) -> Claim:
    return Claim(claim="a matches b", paper="Table 1", metric="imagenet/top1", a=Side("mini A"), b=Side("mini B"),
                 expect=expect, margin=margin)


def test_mean_interval_is_students_t_over_seeds():
    # By hand: mean 2, s = 1, half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321 = 2.4841.
    ci = mean_interval([1.0, 2.0, 3.0])
    assert ci.estimate == 2.0
    assert ci.lo == pytest.approx(2 - 2.4841, abs=1e-4) and ci.hi == pytest.approx(2 + 2.4841, abs=1e-4)
    assert ci.text() == "2.00 [-0.48, 4.48]"
    one = mean_interval([25.0])
    assert (one.lo, one.hi) == (None, None) and one.text() == "25.00"  # one seed: the mean alone


@pytest.mark.parametrize("a, b", [([61.0, 64.5, 63.2], [58.1, 60.0]),
                                  ([22.6, 25.1, 20.3, 24.0], [23.0, 23.1, 22.9]),
                                  ([1.0, 2.0], [5.0, 9.0, 4.0, 7.5, 6.0])])
def test_welch_interval_matches_scipy(a, b):
    ci = welch_difference(a, b)
    oracle = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=0.95)
    assert ci.estimate == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert (ci.lo, ci.hi) == (pytest.approx(oracle.low), pytest.approx(oracle.high))


@pytest.mark.parametrize("a, b", [([29.2, 30.1, 27.5], [24.1, 24.9, 23.0]), ([10.0, 12.0], [11.0, 12.5])])
def test_paired_interval_matches_scipy(a, b):
    ci = paired_difference(a, b)
    oracle = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.95)
    assert (ci.lo, ci.hi) == (pytest.approx(oracle.low), pytest.approx(oracle.high))
    # Pairing removes the spread the two share: narrower than Welch's interval on the same values.
    welch = welch_difference(a, b)
    assert ci.hi - ci.lo < welch.hi - welch.lo


def test_an_interval_without_spread_is_the_difference_itself():
    ci = welch_difference([30.0, 30.0], [25.0, 25.0])  # Welch's degrees of freedom would be 0 / 0
    assert (ci.estimate, ci.lo, ci.hi) == (5.0, 5.0, 5.0)


@pytest.mark.parametrize("expect, margin, lo, hi, outcome", [
    ("at_least", 1.0, -0.5, 2.0, "reproduces"),
    ("at_least", 1.0, -1.0, 2.0, "reproduces"),  # lo == -margin is within the claim
    ("at_least", 1.0, -3.0, -1.5, "does not reproduce"),
    ("at_least", 1.0, -2.0, 0.5, "inconclusive"),
    ("more", 1.0, 1.5, 3.0, "reproduces"),
    ("more", 1.0, 1.0, 3.0, "inconclusive"),  # lo == margin is not more than the margin
    ("more", 1.0, -1.0, 1.0, "does not reproduce"),
    ("more", 0.0, -0.5, 2.0, "inconclusive"),
    ("within", 1.0, -0.5, 0.5, "reproduces"),
    ("within", 1.0, -1.0, 1.0, "reproduces"),
    ("within", 1.0, 1.5, 3.0, "does not reproduce"),
    ("within", 1.0, -3.0, -1.5, "does not reproduce"),
    ("within", 1.0, -0.5, 2.0, "inconclusive"),
])
def test_every_branch_of_every_expectation(expect, margin, lo, hi, outcome):
    assert EXPECTATIONS[expect].judge(lo, hi, margin) == outcome


def test_expectations_read_as_their_condition():
    assert EXPECTATIONS["at_least"].reads(1.0) == "a - b >= -1"
    assert EXPECTATIONS["at_least"].reads(0.0) == "a - b >= 0"
    assert EXPECTATIONS["more"].reads(0.5) == "a - b > 0.5"
    assert EXPECTATIONS["within"].reads(2.0) == "|a - b| <= 2"


def test_verdict_lines():
    a, b = [30.0, 32.0, 31.0], [25.0, 27.0, 24.0]
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert verdict(_claim("at_least", 1.0), a, b, paired=False) == (
        f"reproduces: +5.67 points, 95% CI [{welch.low:.2f}, {welch.high:.2f}] (Welch, 3 vs 3 seeds)")
    paired = stats.ttest_rel(b, a).confidence_interval()
    assert paired.high < -1  # the whole interval below -margin
    assert verdict(_claim("at_least", 1.0), b, a, paired=True) == (
        f"does not reproduce: -5.67 points, 95% CI [{paired.low:.2f}, {paired.high:.2f}] (paired, 3 seeds)")
    assert verdict(_claim("within", 1.0), [30.0], b, paired=False) == (
        "inconclusive: +4.67 points (too few seeds for an interval)")
    assert verdict(_claim("more"), [30.0], [25.0], paired=True) == (
        "inconclusive: +5.00 points (too few seeds for an interval)")
