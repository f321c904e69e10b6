"""Is a study's answer trustworthy? Warm-up, run length, stability and precision checks.

Each check is a pure function of compact per-replication summaries, so the driver can run them on
what workers return (a `TimeProfile` and a quantile sketch per replication) without per-request
data.

- **Warm-up (MSER-5).** A system that starts empty shows TTFTs that are too low at first. The
  cross-replication average TTFT, by arrival time, is cut into batches of 5 time bins; MSER picks
  the truncation d minimising the variance of the mean of what remains,
  ``sum_{j>=d} (Z_j - mean_{j>=d} Z)^2 / (m - d)^2`` over d <= m/2 (White 1997; White, Cobb &
  Spratt 2000). The detected warm-up is the start time of the first kept batch. A minimum found at
  the last allowed d means no steady state was seen (the run is too short or never settles).
- **Run too short.** A quantile whose pooled estimate is visibly biased (`quantile_run_too_short`)
  or rests on too few independent tail episodes, and a mean carried by such a tail
  (`tail_episodes_short`, `MeanTail`): the total measured time (replications x window) is too
  short for the interval to hold its stated coverage.
- **Stability.** Offered load >= 1 on any pool (from the spec) cannot reach a steady state; and a
  TTFT that keeps growing from the first to the second half of the measured window, consistently
  across replications, marks a run that has not settled.
- **Precision.** Which cells are wider than a relative half-width target, and how many
  replications (and waves of about one replication per CPU) would likely bring them in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from distsim.stats.intervals import Interval, QuantileSection, quantile_section
from distsim.stats.sketch import LogHistogram

PROFILE_BINS = 250  # time bins per replication for warm-up and trend checks
MSER_BATCH = 5
TRANSIENT_ALPHA = 0.01  # significance a detected transient must reach across replications
# A quantile is flagged when its pooled estimate's estimated bias exceeds this fraction of its
# interval half-width (see quantile_run_too_short).
RUN_SHORT_FRACTION = 0.05
# A quantile interval is at risk when fewer independent episodes beyond the quantile than this
# occur in all replications together (`QuantileSection.tail_episodes`), and a mean when the share
# of it carried by requests beyond its pooled P99, over sqrt(that P99's episodes), exceeds
# MEAN_TAIL_SCORE_MAX. Calibrated on studies/default.yaml and a skewed variant (docs/statistics.md).
TAIL_EPISODES_MIN = 12.0
MEAN_TAIL_LEVEL = 0.99
MEAN_TAIL_SCORE_MAX = 0.015
# A TTFT rise from the first to the second half of the measured window is "growing" when it is
# significant at this level across replications and larger than this fraction of the first half.
GROWTH_ALPHA = 1e-3
GROWTH_MIN_REL = 0.10


# ---------------------------------------------------------------------------- time profiles


@dataclass(frozen=True)
class TimeProfile:
    """One replication's TTFT by arrival time: sum and count of every request (warm-up included)
    in each of `PROFILE_BINS` equal bins over [0, duration_s)."""

    duration_s: float
    ttft_sum_s: np.ndarray  # float64 per bin
    count: np.ndarray  # int64 per bin

    @classmethod
    def of(
        cls, arrival_s: np.ndarray, ttft_s: np.ndarray, duration_s: float, bins: int = PROFILE_BINS
    ) -> TimeProfile:
        b = np.clip((np.asarray(arrival_s) / duration_s * bins).astype(np.int64), 0, bins - 1)
        return cls(
            duration_s=float(duration_s),
            ttft_sum_s=np.bincount(b, weights=ttft_s, minlength=bins).astype(np.float64),
            count=np.bincount(b, minlength=bins).astype(np.int64),
        )

    @property
    def bin_s(self) -> float:
        return self.duration_s / self.count.size

    def to_dict(self) -> dict[str, object]:
        return {
            "duration_s": self.duration_s,
            "ttft_sum_s": self.ttft_sum_s.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TimeProfile:
        return cls(
            float(data["duration_s"]),  # type: ignore[arg-type]
            np.asarray(data["ttft_sum_s"], dtype=np.float64),
            np.asarray(data["count"], dtype=np.int64),
        )


def profile_to_json(profile: TimeProfile) -> str:
    return json.dumps(profile.to_dict(), separators=(",", ":"))


def profile_from_json(text: str) -> TimeProfile:
    return TimeProfile.from_dict(json.loads(text))


def average_profile(profiles: Sequence[TimeProfile]) -> tuple[np.ndarray, np.ndarray]:
    """(bin start times, cross-replication mean TTFT) over the bins where any request arrived."""
    total = np.sum([p.ttft_sum_s for p in profiles], axis=0)
    count = np.sum([p.count for p in profiles], axis=0)
    starts = np.arange(count.size) * profiles[0].bin_s
    kept = count > 0
    return starts[kept], total[kept] / count[kept]


# ---------------------------------------------------------------------------- MSER-5


@dataclass(frozen=True)
class Mser:
    """MSER's choice on a series: drop the first `truncation` observations."""

    truncation: int  # observations (not batches) to drop
    batches: int  # batches in the series
    reliable: bool  # False when the minimum sits at the largest truncation allowed


def mser(series: np.ndarray, batch: int = MSER_BATCH) -> Mser:
    """MSER-`batch` truncation of a series (trailing observations short of a batch are dropped)."""
    y = np.asarray(series, dtype=np.float64)
    m = y.size // batch
    if m < 4:
        return Mser(0, m, False)
    z = y[: m * batch].reshape(m, batch).mean(axis=1)
    # Tail sums from each d to the end, so every candidate costs O(1).
    tail_n = np.arange(m, 0, -1, dtype=np.float64)
    tail_sum = np.cumsum(z[::-1])[::-1]
    tail_sq = np.cumsum((z * z)[::-1])[::-1]
    sse = tail_sq - tail_sum**2 / tail_n
    d_max = m // 2
    score = sse[: d_max + 1] / tail_n[: d_max + 1] ** 2
    d = int(np.argmin(score))
    return Mser(d * batch, m, d < d_max)


@dataclass(frozen=True)
class Warmup:
    """The warm-up MSER-5 detects on the cross-replication average TTFT series."""

    detected_s: float
    reliable: bool


def _split_means(profile: TimeProfile, cut_s: float) -> tuple[float, float] | None:
    """Mean TTFT of requests arriving before and after `cut_s` in one replication."""
    before = np.arange(profile.count.size) * profile.bin_s < cut_s
    c0, c1 = profile.count[before].sum(), profile.count[~before].sum()
    if c0 == 0 or c1 == 0:
        return None
    return (
        float(profile.ttft_sum_s[before].sum() / c0),
        float(profile.ttft_sum_s[~before].sum() / c1),
    )


def detect_warmup(profiles: Sequence[TimeProfile]) -> Warmup:
    """MSER-5 on the replications' average TTFT by arrival time, confirmed across replications.

    MSER alone also truncates stationary runs: a chance burst of long TTFTs early in the run
    raises the variance of the untruncated series, so cutting past it "helps". A real start-up
    transient is systematic: in every replication, requests before the cut see a different mean
    TTFT than those after. So the cut is kept only when that per-replication difference is
    significant (paired t over replications, two-sided, at `TRANSIENT_ALPHA`); otherwise no
    warm-up is detected.
    """
    starts, series = average_profile(profiles)
    result = mser(series)
    if result.truncation == 0 or result.truncation >= starts.size:
        return Warmup(0.0, result.reliable)
    cut_s = float(starts[result.truncation])
    pairs = [m for m in (_split_means(p, cut_s) for p in profiles) if m is not None]
    if len(pairs) < 2:
        return Warmup(cut_s, False)
    delta = np.array([after - before for before, after in pairs])
    if np.all(delta == delta[0]):
        significant = bool(delta[0] != 0)
    else:
        significant = bool(_t_test_p(delta, two_sided=True) < TRANSIENT_ALPHA)
    return Warmup(cut_s if significant else 0.0, result.reliable)


def _t_test_p(d: np.ndarray, *, two_sided: bool) -> float:
    """p-value of the one-sample t test of mean(d) = 0 (two-sided, or against mean > 0), as
    `scipy.stats.ttest_1samp` computes it (mean over sqrt(var(ddof=1)/n), Student t on n - 1
    degrees of freedom) without its dispatch, which cost ~1 ms a call."""
    from scipy.special import stdtr  # on use: Ray workers import this module for TimeProfile only

    n = d.size
    mean = d.mean()
    dev = d - mean
    t = float(mean / np.sqrt(np.mean(dev * dev) * (n / (n - 1)) / n))
    return float(2.0 * stdtr(n - 1, -abs(t))) if two_sided else float(stdtr(n - 1, -t))


def warmup_short(warmup_s: float, detected: Warmup) -> bool:
    """The configured warm-up ends before the detected transient does."""
    return warmup_s < detected.detected_s


# ---------------------------------------------------------------------------- run length


def pooled_bias_ratio(
    pooled: float, per_replication: Sequence[float] | np.ndarray, half_width: float
) -> float:
    """Estimated bias of the pooled quantile, as a fraction of its interval half-width.

    A quantile estimated from n requests has a bias of order 1/n. The average of R
    per-replication estimates carries it in full; the pooled estimate, from R·n requests, about
    1/R of it. So (mean(per-replication) - pooled) / (R - 1) estimates the pooled estimate's own
    bias, which is what shifts its interval away from the truth.
    """
    values = np.asarray(per_replication, dtype=np.float64)
    if values.size < 2:
        return 0.0
    bias = (float(values.mean()) - float(pooled)) / (values.size - 1)
    if half_width > 0:
        return abs(bias) / half_width
    return 0.0 if bias == 0 else math.inf


def quantile_run_too_short(
    pooled: float,
    per_replication: Sequence[float] | np.ndarray,
    half_width: float,
    fraction: float = RUN_SHORT_FRACTION,
) -> bool:
    """The pooled quantile's estimated bias (`pooled_bias_ratio`) exceeds `fraction` of the
    half-width.

    Accounts for the number of replications R: the same per-replication disagreement means a
    pooled bias R-1 times smaller. Calibrated by coverage studies (docs/statistics.md): on
    studies/default.yaml (R = 30, 400 studies) it fires in 8% of monolithic P99 intervals (which
    cover 0.93) and in at most 1% of every other TTFT cell; on M/M/1 at load 0.8 in 100 s runs
    from empty (R = 10, P99 coverage 0.57) in 95%; on M/M/1 and M/M/4 runs whose P99 intervals
    cover 0.93-0.96 in at most 5%. It measures run length, not skew: a cell whose per-replication
    values are skewed by rare bursts (the default study's disaggregated P99) can undercover
    without it firing.
    """
    return pooled_bias_ratio(pooled, per_replication, half_width) > fraction


def duration_to_clear(
    duration_s: float, warmup_s: float, ratio: float, fraction: float = RUN_SHORT_FRACTION
) -> float:
    """The duration_s at which a flagged quantile would likely clear the flag.

    The pooled bias falls as 1/(measured time) and the half-width as 1/sqrt(measured time), so
    their ratio falls as 1/sqrt(measured time): the measured window grows by (ratio/fraction)²,
    with a factor 1.5 of margin, rounded up to a multiple of 10 s.
    """
    if not math.isfinite(ratio) or ratio <= fraction:
        return float(duration_s)
    return duration_for_factor(duration_s, warmup_s, (ratio / fraction) ** 2)


@dataclass(frozen=True)
class MeanTail:
    """How much of a mean rests on its tail, and on how many independent episodes.

    `share`: fraction of the pooled sum from requests beyond the pooled P99; `episodes`: that
    P99's `QuantileSection.tail_episodes`. `score` = share / sqrt(episodes) is roughly the
    relative error of the mean due to how many slow bursts the study happened to catch: a
    Poisson count of K episodes varies by 1/sqrt(K). When it is large, the replication means are
    skewed by rare bursts and a t-interval from them misses on the low side, with no warning
    from the sample itself (a study that caught few bursts looks less skewed, not more).
    """

    share: float
    episodes: float

    @property
    def score(self) -> float:
        if self.episodes <= 0:
            return math.inf
        return self.share / math.sqrt(self.episodes) if math.isfinite(self.episodes) else 0.0


def mean_tail(
    sketches: Sequence[LogHistogram],
    confidence: float = 0.95,
    section: QuantileSection | None = None,
) -> MeanTail:
    """The `MeanTail` of the replications' sketches (at least 2); `section`: their
    `quantile_section` at `MEAN_TAIL_LEVEL` and `confidence`, when the caller has it."""
    sec = quantile_section(sketches, MEAN_TAIL_LEVEL, confidence) if section is None else section
    total = sum(s.sum for s in sketches)
    above = sum(s.sum_above(sec.pooled) for s in sketches)
    return MeanTail(above / total if total > 0 else 0.0, sec.tail_episodes)


def tail_episodes_short(episodes: float, tail: MeanTail | None = None) -> tuple[bool, float]:
    """(at risk, factor): a quantile with fewer than `TAIL_EPISODES_MIN` independent tail
    episodes, or a mean whose `MeanTail.score` exceeds `MEAN_TAIL_SCORE_MAX`; `factor` is how
    many times more measured time (replications or window: episodes grow with either) would
    bring it to the threshold."""
    if tail is not None:
        ratio = tail.score / MEAN_TAIL_SCORE_MAX
        return ratio > 1.0, ratio * ratio
    if not episodes > 0:
        return True, math.inf
    return episodes < TAIL_EPISODES_MIN, TAIL_EPISODES_MIN / episodes


def quantile_too_short(
    pooled: float, per_replication: Sequence[float] | np.ndarray, half_width: float, episodes: float
) -> tuple[bool, float]:
    """`run_too_short` for a quantile: its pooled bias is visible (`quantile_run_too_short`) or
    its tail rests on too few episodes (`tail_episodes_short`); with the factor of measured time
    that would likely clear both (the bias ratio falls as 1/sqrt(measured time))."""
    short, factor = tail_episodes_short(episodes)
    ratio = pooled_bias_ratio(pooled, per_replication, half_width)
    if ratio > RUN_SHORT_FRACTION:
        return True, max(factor if short else 1.0, (ratio / RUN_SHORT_FRACTION) ** 2)
    return short, factor


def mean_too_short(
    sketches: Sequence[LogHistogram],
    confidence: float = 0.95,
    section: QuantileSection | None = None,
) -> tuple[bool, float]:
    """`run_too_short` for a mean: carried by a tail of too few episodes (`MeanTail`)."""
    tail = mean_tail(sketches, confidence, section)
    return tail_episodes_short(tail.episodes, tail)


def duration_for_factor(duration_s: float, warmup_s: float, factor: float) -> float:
    """duration_s whose measured window is `factor` times longer, with a margin of 1.5, rounded
    up to a multiple of 10 s (unchanged when factor <= 1)."""
    if not math.isfinite(factor) or factor <= 1.0:
        return float(duration_s) if math.isfinite(factor) else math.inf
    measured = (duration_s - warmup_s) * 1.5 * factor
    return float(math.ceil((warmup_s + measured) / 10.0) * 10.0)


# ---------------------------------------------------------------------------- stability


def unstable_pools(offered_load: Mapping[str, float]) -> dict[str, float]:
    """Pools whose offered load (arrival rate x mean service / GPUs) is at least 1."""
    return {pool: float(load) for pool, load in offered_load.items() if load >= 1.0}


@dataclass(frozen=True)
class Trend:
    """Per-replication change of mean TTFT from the first to the second half of the window."""

    rel_increase: float  # average (second - first) / average first
    p_value: float  # one-sided, across replications
    growing: bool


def ttft_trend(profiles: Sequence[TimeProfile], warmup_s: float) -> Trend:
    """Does TTFT keep growing through the measured window [warmup_s, duration_s)?

    Each replication contributes one number, its second-half minus first-half mean TTFT, so the
    test (one-sided t over replications) is valid despite correlation inside a run.
    """
    first_means, deltas = [], []
    for p in profiles:
        starts = np.arange(p.count.size) * p.bin_s
        kept = np.flatnonzero(starts >= warmup_s)
        if kept.size < 2:
            continue
        a, b = np.array_split(kept, 2)
        ca, cb = p.count[a].sum(), p.count[b].sum()
        if ca == 0 or cb == 0:
            continue
        m1 = p.ttft_sum_s[a].sum() / ca
        first_means.append(m1)
        deltas.append(p.ttft_sum_s[b].sum() / cb - m1)
    if len(deltas) < 2:
        return Trend(0.0, 1.0, False)
    d = np.asarray(deltas)
    scale = float(np.mean(first_means))
    rel = float(d.mean() / scale) if scale > 0 else 0.0
    spread = not np.all(d == d[0])
    p_value = _t_test_p(d, two_sided=False) if spread else (0.0 if d[0] > 0 else 1.0)
    return Trend(rel, p_value, p_value < GROWTH_ALPHA and rel > GROWTH_MIN_REL)


# ---------------------------------------------------------------------------- precision


def relative_half_width(interval: Interval) -> float:
    """Half-width over |estimate|; 0 for a zero-width interval, inf around an estimate of 0."""
    hw = interval.half_width
    if hw == 0:
        return 0.0
    return hw / abs(interval.estimate) if interval.estimate != 0 else math.inf


def replications_needed(replications: int, rel_half_width: float, target: float) -> int:
    """Replications that would bring the relative half-width to `target`, as 1/sqrt(R) scaling
    predicts (at least the current count)."""
    if rel_half_width <= target:
        return replications
    if math.isinf(rel_half_width):
        return 2**62
    return max(replications + 1, math.ceil(replications * (rel_half_width / target) ** 2))


def next_wave(
    current: Mapping[str, int], needed: Mapping[str, int], cpus: int, max_replications: int
) -> dict[str, int]:
    """New replication total per scenario for the next wave (scenarios absent need none).

    A wave is about one replication per CPU, shared evenly among the scenarios still short of
    their need, and never takes a scenario past `max_replications`.
    """
    short = [s for s in current if needed.get(s, 0) > current[s] < max_replications]
    if not short:
        return {}
    each = max(1, math.ceil(cpus / len(short)))
    return {s: min(max_replications, current[s] + min(each, needed[s] - current[s])) for s in short}


def waves_left(
    current: Mapping[str, int], needed: Mapping[str, int], cpus: int, max_replications: int
) -> int:
    """Rough number of further waves to meet every need (or the cap)."""
    missing = sum(max(0, min(needed.get(s, 0), max_replications) - n) for s, n in current.items())
    return math.ceil(missing / max(cpus, 1))
