"""The `distsim` command: parse arguments, call one library function, print the result.

Every `DistsimError` becomes one line on stderr and exit code 2; no traceback reaches the user.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from distsim.errors import DistsimError
from distsim.simulate import simulate as simulate_replication
from distsim.spec import load_study, parse_overrides

app = typer.Typer(
    help="Monte Carlo studies of disaggregated vs monolithic LLM serving, with confidence "
    "intervals and significance tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[
    Path, typer.Argument(help="Study spec (YAML), e.g. studies/default.yaml.", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a spec field by dotted path, e.g. --set workload.arrival.rate_rps=4. "
        "Repeatable.",
        show_default=False,
    ),
]


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Monte Carlo studies of disaggregated vs monolithic LLM serving."""
    if version:
        from distsim import __version__

        typer.echo(f"distsim {__version__}")
        raise typer.Exit()


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


@app.command()
def simulate(
    spec: SpecArg,
    arch: Annotated[str, typer.Option("--arch", help="Architecture name from the spec.")],
    replication: Annotated[
        int, typer.Option("--replication", "-r", min=0, help="Replication index (random streams).")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    overrides: SetOpt = None,
) -> None:
    """Run one replication of one architecture and print its metrics."""
    try:
        study = load_study(spec, parse_overrides(overrides))
        rep = simulate_replication(study.scenario(), arch, replication)
    except DistsimError as exc:
        fail(str(exc))
        return
    r = rep.result
    if as_json:
        record = {
            "architecture": arch,
            "replication": replication,
            "seed": study.seed,
            **r.flat(),
            "utilization": {name: p.utilization for name, p in r.pools.items()},
        }
        typer.echo(json.dumps(record, allow_nan=True))
        return
    typer.echo(
        f"{study.name} · {arch} · replication {replication} · seed {study.seed} · "
        f"{r.n_requests} measured requests"
    )
    typer.echo(
        f"  TTFT  mean {_fmt(r.ttft_mean_s)} s   P50 {_fmt(r.ttft_p50_s)} s   "
        f"P90 {_fmt(r.ttft_p90_s)} s   P99 {_fmt(r.ttft_p99_s)} s   max {_fmt(r.ttft_max_s)} s"
    )
    typer.echo(f"  E2E   mean {_fmt(r.e2e_mean_s)} s   P99 {_fmt(r.e2e_p99_s)} s")
    for name, p in r.pools.items():
        typer.echo(
            f"  pool {name:<8} queue wait {_fmt(p.queue_wait_mean_s)} s   "
            f"utilization {p.utilization:.3f}   offered load {p.offered_load:.3f}"
        )
    typer.echo("  (one replication: run `distsim run` for estimates with confidence intervals)")


@app.command()
def workload(
    spec: SpecArg,
    replications: Annotated[
        int | None,
        typer.Option(
            "--replications",
            "-n",
            min=1,
            help="Replications to generate and pool (default: the spec's, at most 100).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    overrides: SetOpt = None,
) -> None:
    """Characterise the workload without simulating: what is generated next to what was asked.

    Arrival rate, CV of inter-arrival gaps, dispersion of arrival counts, prompt and output size
    mean/P50/P99 and their correlation, class shares of a mixture, and rows skipped in data files.
    """
    from distsim.characterize import characterize, format_lines

    try:
        study = load_study(spec, parse_overrides(overrides))
        n = replications if replications is not None else min(study.replications, 100)
        ch = characterize(study.scenario(), n)
    except DistsimError as exc:
        fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps({"name": study.name, **ch.to_dict()}, allow_nan=True))
        return
    typer.echo(
        f"{study.name} · workload · {n} replication(s) x {study.duration_s:g} s generated "
        f"(seed {study.seed}), not simulated"
    )
    for line in format_lines(ch):
        typer.echo(line)
    if study.sweep or study.scenarios:
        swept = ", ".join(study.sweep) or "explicit scenarios"
        typer.echo(f"  (the spec's own values; it also sweeps {swept}: pick a point with --set)")


def main() -> None:
    """Entry point for `python -m distsim`."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
