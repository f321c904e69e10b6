"""What `distsim select` costs against running every candidate to the same precision.

For a study with a `select` block (default studies/select_split.yaml), runs the selection in
this process for several seeds and prints, per seed: the replications the sequential procedure
used (all candidates, first stage included), what equal allocation would cost (every stable
candidate run as long as the best was, plus the same first stage for the overloaded), and what
a fixed-precision run would cost (every stable candidate to a relative half-width of
indifference / 2 on the objective, the count read from the first stage's spread).

    python benchmarks/bench_selection.py [SPEC] [--seeds 10] [--set select.indifference=0.005]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats

from distsim.runner.plan import plan_study
from distsim.runner.selection import Rows, drive, local_simulator
from distsim.spec.study import apply_overrides, load_study, parse_overrides


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec", nargs="?", default="studies/select_split.yaml")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], help="PATH=VALUE override")
    args = ap.parse_args()
    base = load_study(args.spec, parse_overrides(args.set))
    sel_spec = base.select
    assert sel_spec is not None
    print(f"{args.spec}: objective {sel_spec.objective}, indifference {sel_spec.indifference}, "
          f"confidence {base.confidence}, first stage {base.replications}")  # fmt: skip
    print(f"{'seed':>6} {'best':>6} {'select':>7} {'equal':>7} {'own-prec':>10} "
          f"{'paired-prec':>10} {'s':>6}")  # fmt: skip
    totals = np.zeros(4)
    for seed in range(args.seeds):
        study = apply_overrides(base, {"seed": 1000 + seed})
        plan = plan_study(study)
        rows = Rows()
        t = time.perf_counter()
        [sel] = drive(plan, rows, local_simulator(plan, rows))
        wall = time.perf_counter() - t
        used = sel.replications_used
        stable = [r for r in sel.ranking if r.status != "unstable"]
        n_best = max(r.replications for r in stable)
        n0 = study.replications
        unstable = len(sel.ranking) - len(stable)
        equal = len(stable) * n_best + unstable * n0
        # fixed precision: t * sd / sqrt(n) <= (rho / 2) * mean for every stable candidate;
        # `own`: each candidate to its own count, `fixed`: all to the largest (paired, like a
        # precision block)
        need, own = n0, 0
        for r in stable:
            x = rows.array(plan.scenarios[0].id, r.architecture, sel_spec.objective)[:n0]
            cv = float(np.std(x, ddof=1) / np.mean(x))
            tq = float(stats.t.ppf(0.5 + study.confidence / 2, n0 - 1))
            mine = max(n0, math.ceil((tq * cv / (sel_spec.indifference / 2)) ** 2))
            need, own = max(need, mine), own + mine
        fixed = len(stable) * need + unstable * n0
        own += unstable * n0
        totals += (used, equal, own, fixed)
        print(f"{seed:>6} {sel.best or '-':>6} {used:>7} {equal:>7} {own:>10} {fixed:>10} "
              f"{wall:>6.1f}")  # fmt: skip
    t = totals.astype(int)
    print(f"{'total':>6} {'':>6} {t[0]:>7} {t[1]:>7} {t[2]:>10} {t[3]:>10}")
    print(f"select uses {totals[0] / totals[1]:.0%} of equal allocation, "
          f"{totals[0] / totals[2]:.1%} of each candidate to its own precision and "
          f"{totals[0] / totals[3]:.1%} of a paired fixed-precision run")  # fmt: skip


if __name__ == "__main__":
    main()
