"""Workload characterisation: what a scenario actually simulates, next to what its spec asked for.

For each scenario: arrival rate, coefficient of variation (CV) of inter-arrival gaps, index of
dispersion of arrival counts in 10-second bins (variance / mean: 1 for Poisson, far above 1 for
traffic whose rate drifts or bursts), prompt and output size mean / P50 / P99, the Pearson
correlation of prompt and output sizes, and the class shares of a mixture.

*Asked* is the population the spec describes: the arrival process and size distributions (exact:
rounded-and-clamped means and quantiles), or for a trace the whole trace on its scaled time axis
(its rate and request count being the exact expectation over window placements, as in offered
load).
*Simulated* pools the generated requests of the first replications. Pure functions apart from the
cached data files the workload names; `distsim workload` and the report print the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from distsim.spec.study import Scenario
from distsim.spec.workload import (
    TOKEN_CEILING,
    Constant,
    Empirical,
    GammaArrival,
    PoissonArrival,
    TokenDist,
    Uniform,
    Workload,
)
from distsim.workload.distributions import _round_clamp, frozen, rounded_mean
from distsim.workload.generate import (
    DEFAULT_CLASS,
    Requests,
    effective_arrival,
    expected_means,
    generate,
)
from distsim.workload.trace_files import load_column, load_trace

DISPERSION_BIN_S = 10.0
NAN = float("nan")


@dataclass(frozen=True)
class SizeStats:
    """Mean, median and 99th percentile of a token count."""

    mean: float
    p50: float
    p99: float


@dataclass(frozen=True)
class WorkloadStats:
    """One column of the characterisation (asked or simulated); NaN where not defined."""

    requests_per_replication: float
    rate_rps: float
    gap_cv: float
    dispersion: float  # variance / mean of arrival counts per DISPERSION_BIN_S
    prompt: SizeStats
    output: SizeStats
    correlation: float  # Pearson, prompt vs output tokens
    class_shares: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Characterization:
    """Asked vs simulated, with notes on the data behind them (files, skipped rows, caveats)."""

    asked: WorkloadStats
    simulated: WorkloadStats
    replications: int
    duration_s: float
    notes: tuple[str, ...] = ()

    def rows(self) -> list[tuple[str, float, float]]:
        """(label, asked, simulated) in display order."""
        a, s = self.asked, self.simulated
        rows = [
            ("requests per replication", a.requests_per_replication, s.requests_per_replication),
            ("arrival rate (req/s)", a.rate_rps, s.rate_rps),
            ("CV of inter-arrival gaps", a.gap_cv, s.gap_cv),
            (f"dispersion of counts ({DISPERSION_BIN_S:g} s)", a.dispersion, s.dispersion),
        ]
        for name in ("prompt", "output"):
            sa, ss = getattr(a, name), getattr(s, name)
            rows += [
                (f"{name} tokens mean", sa.mean, ss.mean),
                (f"{name} tokens P50", sa.p50, ss.p50),
                (f"{name} tokens P99", sa.p99, ss.p99),
            ]
        rows.append(("corr(prompt, output)", a.correlation, s.correlation))
        if len(a.class_shares) > 1:
            rows += [
                (f"share of class {n}", a.class_shares[n], s.class_shares.get(n, 0.0))
                for n in a.class_shares
            ]
        return rows

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------- simulated


def _gap_cv(gaps: np.ndarray) -> float:
    if gaps.size < 2 or gaps.mean() <= 0:
        return NAN
    return float(gaps.std() / gaps.mean())


def _dispersion(counts: np.ndarray) -> float:
    if counts.size < 2 or counts.mean() <= 0:
        return NAN
    return float(counts.var() / counts.mean())


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return NAN
    return float(np.corrcoef(x, y)[0, 1])


def _sample_sizes(x: np.ndarray) -> SizeStats:
    if x.size == 0:
        return SizeStats(NAN, NAN, NAN)
    return SizeStats(float(x.mean()), float(np.quantile(x, 0.5)), float(np.quantile(x, 0.99)))


def _bin_counts(arrival_s: np.ndarray, duration_s: float) -> np.ndarray:
    """Arrivals per whole DISPERSION_BIN_S bin of [0, duration_s) (a partial last bin dropped)."""
    bins = int(duration_s // DISPERSION_BIN_S)
    if bins < 1:
        return np.zeros(0)
    inside = arrival_s[arrival_s < bins * DISPERSION_BIN_S]
    return np.bincount((inside // DISPERSION_BIN_S).astype(np.int64), minlength=bins)[:bins]


def simulated_stats(requests: Sequence[Requests], duration_s: float) -> WorkloadStats:
    """Statistics of generated requests, pooled over replications (gaps within each one)."""
    n = sum(len(r) for r in requests)
    reps = max(len(requests), 1)
    gaps = np.concatenate([np.diff(r.arrival_s) for r in requests] or [np.zeros(0)])
    counts = np.concatenate([_bin_counts(r.arrival_s, duration_s) for r in requests] or [[]])
    prompt = np.concatenate([r.prompt_tokens for r in requests] or [np.zeros(0)])
    output = np.concatenate([r.output_tokens for r in requests] or [np.zeros(0)])
    shares: dict[str, float] = {}
    if requests:
        names = requests[0].class_names
        ids = np.concatenate([r.class_id for r in requests])
        counts_by_class = np.bincount(ids, minlength=len(names))
        by_class = zip(names, counts_by_class, strict=True)
        shares = {name: float(c) / n if n else NAN for name, c in by_class}
    return WorkloadStats(
        requests_per_replication=n / reps,
        rate_rps=n / (reps * duration_s),
        gap_cv=_gap_cv(gaps),
        dispersion=_dispersion(counts),
        prompt=_sample_sizes(prompt.astype(np.float64)),
        output=_sample_sizes(output.astype(np.float64)),
        correlation=_corr(prompt.astype(np.float64), output.astype(np.float64)),
        class_shares=shares,
    )


# ---------------------------------------------------------------- asked: exact population figures


def _upper(dist: TokenDist) -> int:
    return int(dist.max) if dist.max is not None else TOKEN_CEILING


def cdf_tokens(dist: TokenDist) -> Callable[[int], float]:
    """k -> P(size <= k) of the rounded-and-clamped size (exact, from the continuous CDF)."""
    lo, hi = dist.min, _upper(dist)
    if isinstance(dist, Empirical):
        values = np.sort(_round_clamp(load_column(dist.path, dist.column).values, dist))
        return lambda k: float(np.searchsorted(values, k, side="right") / values.size)
    if isinstance(dist, Constant) or (isinstance(dist, Uniform) and dist.low == dist.high):
        point = float(dist.value if isinstance(dist, Constant) else dist.low)
        v = int(_round_clamp(np.array([point]), dist)[0])
        return lambda k: 1.0 if k >= v else 0.0
    d = frozen(dist)

    def cdf(k: int) -> float:
        if k < lo:
            return 0.0
        if k >= hi:
            return 1.0
        return float(d.cdf(k + 0.5))  # round(X) <= k  <=>  X < k + 0.5

    return cdf


def _quantile_int(cdf: Callable[[int], float], lo: int, hi: int, q: float) -> float:
    """Smallest integer k in [lo, hi] with cdf(k) >= q (bisection)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf(mid) >= q:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def _second_moment(dist: TokenDist) -> float:
    """E[size^2]; for continuous distributions the clamped continuous value (rounding adds
    under 1/12 token^2 to the variance, negligible here)."""
    if isinstance(dist, Empirical):
        v = _round_clamp(load_column(dist.path, dist.column).values, dist).astype(np.float64)
        return float(np.mean(v * v))
    d = frozen(dist)
    if d is None:
        return rounded_mean(dist) ** 2
    lo, hi = float(dist.min), float(_upper(dist))
    inner = float(d.expect(lambda x: x * x, lb=lo, ub=hi if dist.max is not None else np.inf))
    return lo * lo * float(d.cdf(lo)) + inner + (hi * hi * float(d.sf(hi)) if dist.max else 0.0)


def _mixture_sizes(dists: Sequence[TokenDist], weights: np.ndarray) -> SizeStats:
    cdfs = [cdf_tokens(d) for d in dists]
    lo = min(d.min for d in dists)
    hi = max(_upper(d) for d in dists)

    def cdf(k: int) -> float:
        return float(sum(w * c(k) for w, c in zip(weights, cdfs, strict=True)))

    mean = float(np.dot(weights, [rounded_mean(d) for d in dists]))
    return SizeStats(mean, _quantile_int(cdf, lo, hi, 0.5), _quantile_int(cdf, lo, hi, 0.99))


def _trace_stats(workload: Workload, duration_s: float) -> WorkloadStats:
    trace = workload.trace
    assert trace is not None
    table = load_trace(trace.path)
    t = table.arrival_s / trace.rate_scale
    p = table.prompt_tokens.astype(np.float64)
    o = table.output_tokens.astype(np.float64)
    expected = expected_means(workload, duration_s).rate_rps * duration_s
    if trace.mode == "resample":
        arrival = effective_arrival(workload)
        assert arrival is not None and arrival.rate_rps is not None
        rate, cv, dispersion = _process_figures(arrival)
    else:
        rate = expected / duration_s  # exact expectation over window placements
        cv = _gap_cv(np.diff(t))
        dispersion = _dispersion(_bin_counts(t, float(t[-1])))
    return WorkloadStats(
        requests_per_replication=expected,
        rate_rps=rate,
        gap_cv=cv,
        dispersion=dispersion,
        prompt=_sample_sizes(p),
        output=_sample_sizes(o),
        correlation=_corr(p, o),
        class_shares={DEFAULT_CLASS: 1.0},
    )


def _process_figures(arrival: PoissonArrival | GammaArrival) -> tuple[float, float, float]:
    """(rate, gap CV, dispersion) of an arrival process; a gamma process's count dispersion
    depends on the bin length (it tends to cv^2 for long bins), so it is left undefined."""
    assert arrival.rate_rps is not None
    if isinstance(arrival, GammaArrival):
        return float(arrival.rate_rps), float(arrival.cv), NAN
    return float(arrival.rate_rps), 1.0, 1.0


def asked_stats(workload: Workload, duration_s: float) -> WorkloadStats:
    """What the spec describes, exactly (see the module docstring)."""
    if workload.trace is not None:
        return _trace_stats(workload, duration_s)
    assert workload.arrival is not None
    rate, cv, dispersion = _process_figures(workload.arrival)
    if workload.mix is not None:
        w = np.array([c.weight for c in workload.mix], dtype=np.float64)
        w = w / w.sum()
        prompts = [c.prompt_tokens for c in workload.mix]
        outputs = [c.output_tokens for c in workload.mix]
        prompt, output = _mixture_sizes(prompts, w), _mixture_sizes(outputs, w)
        mp = np.array([rounded_mean(d) for d in prompts])
        mo = np.array([rounded_mean(d) for d in outputs])
        var_p = float(np.dot(w, [_second_moment(d) for d in prompts])) - prompt.mean**2
        var_o = float(np.dot(w, [_second_moment(d) for d in outputs])) - output.mean**2
        cov = float(np.dot(w, mp * mo)) - prompt.mean * output.mean  # independent within a class
        corr = cov / np.sqrt(var_p * var_o) if var_p > 0 and var_o > 0 else NAN
        shares = {c.name: float(x) for c, x in zip(workload.mix, w, strict=True)}
    else:
        assert workload.prompt_tokens is not None and workload.output_tokens is not None
        one = np.ones(1)
        prompt = _mixture_sizes([workload.prompt_tokens], one)
        output = _mixture_sizes([workload.output_tokens], one)
        corr, shares = 0.0, {DEFAULT_CLASS: 1.0}  # drawn independently
    return WorkloadStats(
        requests_per_replication=rate * duration_s,
        rate_rps=rate,
        gap_cv=cv,
        dispersion=dispersion,
        prompt=prompt,
        output=output,
        correlation=float(corr),
        class_shares=shares,
    )


# ---------------------------------------------------------------- both, with notes


def data_notes(workload: Workload) -> list[str]:
    """One line per data file: schema, rows, rows skipped; and caveats of the trace mode."""
    notes: list[str] = []
    trace = workload.trace
    if trace is not None:
        table = load_trace(trace.path)
        notes.append(
            f"trace {table.path} ({table.schema} schema): {table.n_rows} rows, "
            f"{table.n_skipped} skipped (missing or non-positive size), "
            f"{table.span_s:.1f} s at {table.mean_rate_rps:.3f} req/s; mode {trace.mode}, "
            f"rate_scale {trace.rate_scale:g}"
        )
        if trace.mode != "resample":
            notes.append(
                "asked: arrival rate and request count are exact expectations of the generated "
                "windows; gap CV, dispersion and sizes are those of the whole trace"
            )
        if trace.mode == "replay":
            notes.append(
                "replay: every replication serves the same requests, so intervals across "
                "replications are not meaningful"
            )
    dists: list[tuple[str, TokenDist | None]] = [
        ("prompt_tokens", workload.prompt_tokens),
        ("output_tokens", workload.output_tokens),
    ]
    for cls in workload.mix or []:
        dists += [
            (f"mix.{cls.name}.prompt_tokens", cls.prompt_tokens),
            (f"mix.{cls.name}.output_tokens", cls.output_tokens),
        ]
    for where, dist in dists:
        if isinstance(dist, Empirical):
            col = load_column(dist.path, dist.column)
            notes.append(
                f"{where}: empirical, column {col.column} of {col.path}: {col.n_rows} rows, "
                f"{col.n_skipped} skipped (missing or non-positive)"
            )
    return notes


def characterize(scenario: Scenario, replications: int) -> Characterization:
    """Generate replications 0..replications-1 of `scenario` and compare them with the spec."""
    requests = [
        generate(scenario.workload, scenario.duration_s, scenario.seed, r)
        for r in range(replications)
    ]
    return Characterization(
        asked=asked_stats(scenario.workload, scenario.duration_s),
        simulated=simulated_stats(requests, scenario.duration_s),
        replications=replications,
        duration_s=scenario.duration_s,
        notes=tuple(data_notes(scenario.workload)),
    )


def _num(x: float, digits: int = 3) -> str:
    if np.isnan(x):
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"


def _compact(label: str, w: WorkloadStats) -> str:
    p, o = w.prompt, w.output
    text = (
        f"{label}: {_num(w.rate_rps)} req/s, gap CV {_num(w.gap_cv)}, dispersion "
        f"{_num(w.dispersion)}; prompt mean/P50/P99 {_num(p.mean)}/{_num(p.p50)}/{_num(p.p99)}, "
        f"output {_num(o.mean)}/{_num(o.p50)}/{_num(o.p99)}, corr {_num(w.correlation, 2)}"
    )
    if len(w.class_shares) > 1:
        text += "; shares " + ", ".join(f"{n} {v:.3f}" for n, v in w.class_shares.items())
    return text


def summary_lines(ch: Characterization) -> list[str]:
    """Two lines (asked, simulated) and the notes: the report's per-scenario workload block."""
    reps = f"simulated ({ch.replications} replication(s))"
    return [_compact("asked", ch.asked), _compact(reps, ch.simulated), *ch.notes]


def _cell(x: float) -> str:
    if np.isnan(x):
        return "—"
    if abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:g}"
    return f"{x:.3f}"


def format_lines(ch: Characterization) -> list[str]:
    """The characterisation as aligned text lines (label, asked, simulated)."""
    rows = ch.rows()
    width = max(len(label) for label, _, _ in rows)
    out = [f"  {'':<{width}}  {'asked':>12}  {'simulated':>12}"]
    out += [f"  {label:<{width}}  {_cell(a):>12}  {_cell(s):>12}" for label, a, s in rows]
    out += [f"  note: {n}" for n in ch.notes]
    return out
