"""The statistics of the regression gate: centre, spread and significance of a row's change.

A benchmark row holds several repetitions (`samples`: per-repetition ratios, each from a
floor and a measurement timed next to each other). A baseline row holds the samples of
several whole runs. On a shared machine two kinds of noise matter:

- within a run, repetitions scatter (a preempted call, a cache miss storm);
- between runs, the whole run shifts (another user's job starts, memory bandwidth is
  contended, the process lands on a busier core): the median of run 2 is not the median
  of run 1 even with identical code.

Samples within one run cannot see the second kind, so a test on samples alone (Mann-Whitney,
a t-test) flags run-to-run shifts as regressions: that is how the old fixed-tolerance gate
failed two runs in three on unchanged code. Here the change of the medians is compared
with the run-level noise, estimated from the baseline's runs (how far their medians
scatter) and from this run's own spread, whichever is larger; all in log units, because
ratios are multiplicative (2x slower and 2x faster are the same distance). A baseline of
fewer than MIN_RUNS runs cannot show its scatter, so PRIOR_RUN_SIGMA stands in for it.

A change is a regression when it exceeds the row's factor AND `Z` run-level standard
errors AND, where both sides have at least `MIN_SAMPLES` repetitions, a one-sided
Mann-Whitney test on the samples gives p < `ALPHA` (the change is not carried by one or two
outliers). A row whose run-level noise alone reaches its factor (Z·SE > log factor) is
"noisy": it is still checked, but only changes larger than `detectable` can fail it.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Z = 3.0  # run-level standard errors a change must exceed (one-sided ~0.1% under normal noise)
ALPHA = 0.01  # Mann-Whitney significance on the samples themselves
MIN_SAMPLES = 3  # repetitions per side below which the rank test is not used
MEDIAN_SE = 1.2533  # standard error of a median / that of a mean, normal samples
# Run-to-run scatter cannot be estimated from fewer than MIN_RUNS baseline runs; until then
# assume PRIOR_RUN_SIGMA (10%, log units), the middle of what single-thread rows showed
# between runs on a shared 2-core machine (3-30%), rather than trusting one run's spread.
MIN_RUNS, PRIOR_RUN_SIGMA = 3, 0.1


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def _logs(xs: Sequence[float]) -> list[float]:
    return [math.log(x) for x in xs]


def mad_sigma(xs: Sequence[float]) -> float:
    """Robust standard deviation (1.4826 × median absolute deviation); 0 for < 2 values."""
    if len(xs) < 2:
        return 0.0
    m = median(xs)
    return 1.4826 * median([abs(x - m) for x in xs])


def within_sigma(runs: Sequence[Sequence[float]]) -> float:
    """Pooled robust spread of log samples around their own run's median."""
    dev = []
    for run in runs:
        if len(run) >= 2:
            logs = _logs(run)
            m = median(logs)
            dev += [abs(x - m) for x in logs]
    return 1.4826 * median(dev) if dev else 0.0


def run_sigma(runs: Sequence[Sequence[float]]) -> float:
    """Standard deviation of one run's log median: between-run scatter or within-run SE.

    The larger of (a) the standard deviation of the runs' log medians (needs two runs) and
    (b) what the within-run spread alone implies for a median of that many samples.
    """
    runs = [r for r in runs if r]
    if not runs:
        return 0.0
    meds = [median(_logs(r)) for r in runs]
    between = statistics.stdev(meds) if len(meds) >= 2 else 0.0
    n = median([len(r) for r in runs])
    within = MEDIAN_SE * within_sigma(runs) / math.sqrt(n)
    return max(between, within)


def mann_whitney_p(worse: Sequence[float], better: Sequence[float]) -> float:
    """One-sided p that `worse` is stochastically larger than `better` (exact for small n)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(worse, better, alternative="greater").pvalue)


@dataclass(frozen=True)
class Comparison:
    """How a row moved between a baseline (several runs) and this run."""

    baseline: float  # median of all baseline samples
    current: float  # median of this run's samples
    change: float  # relative change, positive = worse (in the target's direction)
    detectable: float  # smallest relative change this row can tell from noise (Z·SE)
    p_worse: float | None  # Mann-Whitney one-sided p for "worse"; None: too few samples
    p_better: float | None  # the same for "better"
    n_baseline: int
    n_current: int

    def verdict(self, factor: float) -> str:
        """regression | improved | noisy | ok, for a gate at `factor` (e.g. 1.25)."""
        delta = math.log1p(self.change) if self.change > -1 else -math.inf
        bound = max(math.log(factor), math.log1p(self.detectable))
        if delta > bound and (self.p_worse is None or self.p_worse < ALPHA):
            return "regression"
        if -delta > bound and (self.p_better is None or self.p_better < ALPHA):
            return "improved"  # worth knowing; never fails
        return "noisy" if self.detectable > factor - 1 else "ok"


def compare(direction: str, baseline_runs: Sequence[Sequence[float]],
            current: Sequence[float]) -> Comparison:
    """Compare this run's samples with the baseline's runs for a '<=' or '>=' row."""
    base_all = [x for run in baseline_runs for x in run]
    current = list(current)
    if not base_all or not current:
        raise ValueError("compare needs samples on both sides")
    b, c = median(base_all), median(current)
    sign = 1.0 if direction == "<=" else -1.0
    if min(base_all + current) <= 0:
        # counts and fractions that can be 0 (mismatches): no log scale, no noise model;
        # a change is its difference relative to the baseline (absolute when that is 0)
        diff = sign * (c - b)
        change = diff / abs(b) if b != 0 else diff
        return Comparison(b, c, change, 0.0, None, None, len(base_all), len(current))
    k = len([r for r in baseline_runs if r])
    sigma_base = run_sigma(baseline_runs)
    if k < MIN_RUNS:
        sigma_base = max(sigma_base, PRIOR_RUN_SIGMA)
    sigma_now = max(sigma_base, MEDIAN_SE * mad_sigma(_logs(current)) / math.sqrt(len(current)))
    se = math.sqrt(sigma_base ** 2 / k + sigma_now ** 2)
    delta = sign * (math.log(c) - math.log(b))
    p_worse = p_better = None
    # the rank test only where it can reach ALPHA at all (3 vs 3 samples cannot: 1/20)
    if len(current) >= MIN_SAMPLES and len(base_all) >= MIN_SAMPLES and \
            1 / math.comb(len(current) + len(base_all), len(current)) < ALPHA / 2:
        high, low = (current, base_all) if sign > 0 else (base_all, current)
        p_worse, p_better = mann_whitney_p(high, low), mann_whitney_p(low, high)
    return Comparison(b, c, math.expm1(delta), math.expm1(Z * se), p_worse, p_better,
                      len(base_all), len(current))


def parse_samples(text: str) -> list[list[float]]:
    """'1.0 1.1 | 0.9 1.2' → [[1.0, 1.1], [0.9, 1.2]] (runs separated by '|')."""
    runs = []
    for part in (text or "").split("|"):
        values = [float(v) for v in part.split()]
        if values:
            runs.append(values)
    return runs


def format_samples(runs: Sequence[Sequence[float]]) -> str:
    return " | ".join(" ".join(f"{x:.6g}" for x in run) for run in runs if run)
