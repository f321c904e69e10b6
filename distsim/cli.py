"""The `distsim` command: parse arguments, call one library function, print the result.

Every `DistsimError` becomes one line on stderr and exit code 2; no traceback reaches the user.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from typer.core import TyperCommand, TyperGroup

from distsim.errors import DistsimError
from distsim.spec.study import load_study, parse_overrides


def _reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line, so the terminal wraps it at word boundaries
    (Typer keeps the docstring's line breaks after the first paragraph)."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _conventional(command: click.Command) -> None:
    """Help reflowed; flags (`--fresh`, `--help`) shown without a `<bool>` value placeholder."""
    command.help = _reflow(command.help)
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _conventional(self)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Group(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _conventional(self)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


app = typer.Typer(
    cls=_Group,
    help="Monte Carlo studies of disaggregated vs monolithic LLM serving, with confidence "
    "intervals and significance tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = partial(app.command, cls=_Command)

SpecArg = Annotated[
    Path,
    typer.Argument(
        metavar="SPEC", help="Study spec (YAML), e.g. studies/default.yaml.", show_default=False
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Override a spec field by dotted path, e.g. --set workload.arrival.rate_rps=4. "
        "Repeatable.",
        show_default=False,
    ),
]


def _print_version(value: bool) -> None:
    if value:
        from distsim import __version__

        typer.echo(f"distsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Monte Carlo studies of disaggregated vs monolithic LLM serving."""


# An error is one line, at most this long (a value quoted from the input can be huge).
MAX_ERROR_CHARS = 1000


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`message` on one line, cut to `limit` characters: line breaks and other control
    characters from quoted input are escaped (`\\n`, `\\x1b`), never sent to the terminal."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return text if len(text) <= limit else text[: limit - 16] + " ... (cut short)"


def fail(message: str) -> NoReturn:
    """Print one error line and exit with code 2."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code=2)


def _run_guarded(target: str, interrupted: str, *args: Any, **kwargs: Any) -> Any:
    """Call a study-level library function ("module:function") behind the CLI's error
    boundary: a DistsimError is one line (exit 2); Ctrl-C keeps every finished replication and
    exits 130 with `interrupted`."""
    # pyarrow's default allocator (jemalloc) keeps freed pages; with the system allocator the
    # driver's peak memory is lower on large studies (figures: benchmarks/README.md). pyarrow
    # reads this when it is first imported, with the study runner below.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    module, name = target.split(":")
    try:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    except DistsimError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(interrupted, err=True)
        raise typer.Exit(code=130) from None


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


@command()
def simulate(
    spec: SpecArg,
    arch: Annotated[
        str, typer.Option("--arch", metavar="NAME", help="Architecture name from the spec.")
    ],
    replication: Annotated[
        int,
        typer.Option(
            "--replication", "-r", min=0, metavar="R", help="Replication index (random streams)."
        ),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    scenario: Annotated[
        str | None,
        typer.Option(
            "--scenario",
            metavar="ID",
            help="Scenario id of the plan (see `distsim validate`); default: the first.",
            show_default=False,
        ),
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Run one replication of one architecture of one scenario and print its metrics."""
    from distsim.runner.plan import plan_study
    from distsim.sim.replication import simulate as simulate_replication

    try:
        study = load_study(spec, parse_overrides(overrides))
        plan = plan_study(study)
        planned = plan.scenario(scenario) if scenario is not None else plan.scenarios[0]
        auto = None
        if planned.scenario.warmup_s == "auto":  # resolved as `distsim run` would, in-process
            from distsim.runner import warmup

            auto = warmup.pilot_local(planned)
            planned = warmup.apply(plan, {planned.id: auto}).scenarios[planned.index]
        rep = simulate_replication(planned.scenario, arch, replication)
    except DistsimError as exc:
        fail(str(exc))
    r = rep.result
    if as_json:
        record = {
            "scenario_id": planned.id,
            **planned.params,
            "architecture": arch,
            "replication": replication,
            "seed": planned.scenario.seed,
            **r.flat(),
            "utilization": {name: p.utilization for name, p in r.pools.items()},
        }
        typer.echo(json.dumps(record, allow_nan=True))
        return
    typer.echo(
        f"{study.name} · scenario {planned.label()} · {arch} · replication {replication} · "
        f"seed {planned.scenario.seed} · {r.n_requests} measured requests"
    )
    if auto is not None:
        from distsim.report.terminal import auto_warmup_text

        typer.echo(f"  {auto_warmup_text(auto.to_record())}")
    typer.echo(
        f"  TTFT  mean {_fmt(r.ttft_mean_s)} s   P50 {_fmt(r.ttft_p50_s)} s   "
        f"P90 {_fmt(r.ttft_p90_s)} s   P99 {_fmt(r.ttft_p99_s)} s   max {_fmt(r.ttft_max_s)} s"
    )
    typer.echo(f"  E2E   mean {_fmt(r.e2e_mean_s)} s   P99 {_fmt(r.e2e_p99_s)} s")
    typer.echo(
        f"  TPOT  mean {_fmt(r.tpot_mean_s)} s   P50 {_fmt(r.tpot_p50_s)} s   "
        f"P90 {_fmt(r.tpot_p90_s)} s   P99 {_fmt(r.tpot_p99_s)} s"
    )
    if r.slo_attainment is not None:
        typer.echo(f"  SLO attainment {r.slo_attainment:.3f}")
    if r.preemptions is not None:
        typer.echo(f"  preemptions {r.preemptions}")
    for name, p in r.pools.items():
        batching = ""
        if p.batch_size_mean is not None:
            batching = f"   mean batch {p.batch_size_mean:.1f}   mean KV use {_fmt(p.kv_use_mean)}"
        typer.echo(
            f"  pool {name:<8} queue wait {_fmt(p.queue_wait_mean_s)} s   "
            f"utilization {p.utilization:.3f}   offered load {p.offered_load:.3f}{batching}"
        )
    typer.echo("  (one replication: run `distsim run` for estimates with confidence intervals)")


@command()
def workload(
    spec: SpecArg,
    replications: Annotated[
        int | None,
        typer.Option(
            "--replications",
            "-n",
            min=1,
            metavar="N",
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
    from distsim.runner.plan import plan_study
    from distsim.workload.characterize import characterize, format_lines

    try:
        study = load_study(spec, parse_overrides(overrides))
        plan = plan_study(study)
        n = replications if replications is not None else min(study.replications, 100)
        chars = [(ps, characterize(ps.scenario, n)) for ps in plan.scenarios]
    except DistsimError as exc:
        fail(str(exc))
    if as_json:
        records = [{"scenario_id": ps.id, **ps.params, **ch.to_dict()} for ps, ch in chars]
        typer.echo(json.dumps({"name": study.name, "scenarios": records}, allow_nan=True))
        return
    typer.echo(
        f"{study.name} · workload · {n} replication(s) x {study.duration_s:g} s generated per "
        f"scenario (seed {study.seed}), nothing simulated"
    )
    for ps, ch in chars:
        typer.echo(f"scenario {ps.label()}")
        for line in format_lines(ch):
            typer.echo(line)


# ---------------------------------------------------------------- studies: run, validate, report

OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", metavar="DIR", help="Output folder (default: results/<name>).", show_default=False
    ),
]
ReplicationsOpt = Annotated[
    int | None,
    typer.Option(
        "--replications",
        metavar="N",
        help="Replications per scenario x architecture (overrides the spec's).",
        show_default=False,
    ),
]


ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Run (or pass) a study estimated to be far beyond this machine (see `validate`).",
    ),
]


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        typer.echo(f"note: {note}", err=True)


@command()
def run(
    spec: SpecArg,
    out: OutOpt = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDRESS",
            help="Join this Ray cluster (e.g. 10.0.0.5:6379 or auto); default: RAY_ADDRESS, "
            "else start Ray on this machine.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            metavar="N",
            help="CPUs of the local Ray instance (default: all cores, fewer for a study too "
            "small to keep them busy).",
            show_default=False,
        ),
    ] = None,
    replications: ReplicationsOpt = None,
    overrides: SetOpt = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete earlier results in the folder first.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    force: ForceOpt = False,
    no_export: Annotated[
        bool,
        typer.Option(
            "--no-export",
            help="Write no replications.parquet (a second copy of the plan's rows, for very "
            "large studies); rows/ keeps every row and a later run without it writes the file.",
        ),
    ] = False,
) -> None:
    """Run a study (or resume it): every scenario x architecture x replication, on Ray.

    Exit code 0 when every replication succeeded, 1 when some failed (the rest is saved and
    reported), 2 on bad input, 130 when interrupted (finished replications are kept).
    """
    result = _run_guarded(
        "distsim.runner.study:run_study",
        "interrupted: every finished replication is saved; run the same command to resume "
        "(or `distsim report DIR` for tables of what is done)",
        spec,
        out_dir=out,
        address=address,
        workers=workers,
        replications=replications,
        overrides=parse_overrides(overrides),
        fresh=fresh,
        progress=not quiet,
        force=force,
        export=not no_export,
    )
    from distsim.runner.location import uri_of

    typer.echo(result.report())
    _print_notes(result.notes)
    exported = "" if no_export else "replications.parquet, "
    typer.echo(
        f"results: {uri_of(result.out_dir)}/ ({exported}summary.csv, "
        f"comparisons.csv, manifest.json) · {result.rows_simulated} rows simulated, "
        f"{result.rows_reused} reused"
    )
    plots = sorted(p.name for p in Path(result.out_dir).glob("*.png"))
    if (Path(result.out_dir) / "report.md").exists():
        typer.echo(
            f"read next: {Path(result.out_dir) / 'report.md'}"
            + (f" · plots: {', '.join(plots)}" if plots else "")
        )
    if result.failures:
        for f in result.failures[:20]:
            typer.echo(
                f"error: scenario {f['scenario_id']} · {f['architecture']} · replication "
                f"{f['replication']} (seed {f['seed']}): {one_line(str(f['error']), 300)}",
                err=True,
            )
        more = len(result.failures) - 20
        if more > 0:
            typer.echo(f"error: ... and {more} more (see manifest.json)", err=True)
        raise typer.Exit(code=1)
    if not result.complete:  # never report success with rows missing
        missing = result.plan.rows - result.row_counts()[0]
        typer.echo(
            f"error: {missing} of {result.plan.rows} rows are missing; run the same command "
            "again to complete the study",
            err=True,
        )
        raise typer.Exit(code=1)


@command()
def validate(
    spec: SpecArg,
    replications: ReplicationsOpt = None,
    overrides: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Check a spec and print the plan (scenarios, tasks, requests, time and memory) without
    running anything. A study far beyond this machine is an error (exit 2) unless --force."""
    from distsim.runner import budget
    from distsim.runner.execute import task_count
    from distsim.runner.plan import expected_cost_per_unit, plan_study
    from distsim.runner.study import resolve_study

    try:
        study = resolve_study(spec, replications=replications, overrides=parse_overrides(overrides))
        plan = plan_study(study)
    except DistsimError as exc:
        fail(str(exc))
    archs = ", ".join(a + (" [baseline]" if a == plan.baseline else "") for a in plan.architectures)
    typer.echo(f"{study.name}: valid")
    typer.echo(f"  scenarios      {len(plan.scenarios)}")
    for line in _scenario_lines(plan):
        typer.echo(f"    {line}")
    typer.echo(f"  architectures  {len(plan.architectures)}: {archs}")
    typer.echo(f"  replications   {plan.replications} per scenario x architecture")
    if study.precision is not None:
        from distsim.report.terminal import replications_text

        typer.echo(f"  precision      {replications_text(plan)}")
    autos = [ps.label() for ps in plan.scenarios if ps.scenario.warmup_s == "auto"]
    if autos:
        from distsim.runner.warmup import PILOT_REPLICATIONS

        typer.echo(
            f"  warmup_s auto  {len(autos)} scenario(s): a pilot of {PILOT_REPLICATIONS} "
            "replications each (MSER-5) fixes the warm-up before the run"
        )
    typer.echo(f"  rows           {plan.rows:,} (scenario x architecture x replication)")
    cost = sum(max(expected_cost_per_unit(ps.scenario), 1.0) for ps in plan.scenarios)
    cpus = budget.run_cpus(plan, None, None) or os.cpu_count() or 1  # as `run` chooses them
    tasks = task_count(cost * plan.replications, plan.units, cpus)
    typer.echo(
        f"  tasks          {tasks:,} on this machine ({cpus} CPUs); each runs whole "
        f"(scenario, replication) units, all architectures on one workload"
    )
    typer.echo(f"  requests       {plan.expected_requests():,.0f} simulated (expected)")
    estimate = budget.estimate(plan, cpus, budget.available_memory_bytes())
    typer.echo(f"  estimate       {estimate.line()}")
    _echo_derived(plan)
    typer.echo("  nothing was run")
    if estimate.problems():
        try:
            budget.check(plan, cpus, force=force)
        except DistsimError as exc:
            fail(str(exc))
        typer.echo(f"warning: {', '.join(estimate.problems())} (--force given)", err=True)


def _scenario_lines(plan: Any) -> list[str]:
    """Every scenario's label; a large sweep: its swept parameters (count and range of values)
    and the first and last scenario, so the plan stays readable at 10,000 scenarios."""
    from distsim.report.sweeps import sweep_axes
    from distsim.report.terminal import LARGE_SWEEP_SCENARIOS

    if len(plan.scenarios) <= LARGE_SWEEP_SCENARIOS:
        return [ps.label() for ps in plan.scenarios]
    axes, _ = sweep_axes(plan)
    lines = [
        f"{ax.label()}: {len(ax.values)} values, {ax.tick(0)} ... {ax.tick(len(ax.values) - 1)}"
        for ax in axes
    ]
    return lines + [
        f"first {plan.scenarios[0].label()}",
        f"last  {plan.scenarios[-1].label()}",
    ]


def _echo_derived(plan: Any) -> None:
    """The serving figures each scenario implies (KV per token, KV capacity, token rates); a
    large sweep: the first 3 distinct sets, each with how many scenarios share it."""
    from distsim.report.terminal import LARGE_SWEEP_SCENARIOS
    from distsim.sim.serving import derived_figures, format_derived

    blocks: dict[tuple[str, ...], list[str]] = {}
    for ps in plan.scenarios:
        lines = tuple(format_derived(derived_figures(ps.scenario)))
        blocks.setdefault(lines, []).append(ps.label())
    large = len(plan.scenarios) > LARGE_SWEEP_SCENARIOS
    for k, (lines, labels) in enumerate(blocks.items()):
        if large and k == 3:
            typer.echo(f"  derived: {len(blocks) - 3} more distinct set(s) not shown")
            break
        where = "" if len(blocks) == 1 else f" ({', '.join(labels)})"
        if large and len(blocks) > 1:
            where = f" ({len(labels)} scenario(s), e.g. {labels[0]})"
        typer.echo(f"  derived{where}")
        for line in lines:
            typer.echo(f"    {line}")


@command()
def report(
    out_dir: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="A results folder written by `distsim run`.", show_default=False
        ),
    ],
) -> None:
    """Print the tables of a stored study again and rebuild summary.csv, comparisons.csv,
    report.md (with plots) and summary.json, without simulating anything."""
    from distsim.runner.study import load_result, write_report_files

    if _is_selection(out_dir):
        _report_selection(out_dir)
        return
    try:
        result = load_result(out_dir)
    except DistsimError as exc:
        fail(str(exc))
    typer.echo(result.report())
    _print_notes(result.notes)
    try:
        written = write_report_files(result, tables=True)
    except (OSError, DistsimError) as exc:
        fail(f"{out_dir}: cannot write the report: {exc}")
    from distsim.runner.location import uri_of

    typer.echo(f"report: {uri_of(written)}")
    if not result.complete:
        typer.echo(
            f"note: {result.row_counts()[0]} of {result.plan.rows} rows stored; "
            "run the study again to complete it",
            err=True,
        )


def _is_selection(out_dir: Path) -> bool:
    """A folder written by `distsim select` (it has selection.json): a local folder or an
    object-store URI; a location that cannot be read is left to the study's report to explain."""
    from distsim.runner.location import Location

    try:
        return Location.parse(out_dir).is_file("selection.json")
    except (DistsimError, OSError, ValueError):
        return False


def _report_selection(out_dir: Path) -> None:
    from distsim.runner.selection import load_selection

    try:
        result = load_selection(out_dir)
    except DistsimError as exc:
        fail(str(exc))
        return
    typer.echo(result.report())
    _print_notes(result.notes)
    from distsim.runner.location import uri_of

    typer.echo(f"report: {uri_of(Path(out_dir) / 'report.md')}")


@command("select")
def select_command(
    spec: SpecArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Output folder (default: results/<name>-select).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            metavar="N",
            help="CPUs of the local Ray instance.",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDRESS",
            help="Join this Ray cluster (default: RAY_ADDRESS, else start Ray on this machine).",
            show_default=False,
        ),
    ] = None,
    overrides: SetOpt = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete earlier results in the folder first.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    force: ForceOpt = False,
) -> None:
    """Choose the best architecture of a spec with a `select` block, with a probability of
    correct selection of at least the study's confidence (docs/selection.md).

    Prints the answer first, then the ranking; writes selection.json and report.md. Resumes
    from stored rows like `run`. Exit code 0, 1 when some replications failed, 2 on bad input,
    130 when interrupted."""
    result = _run_guarded(
        "distsim.runner.selection:select_study",
        "interrupted: every finished replication is saved; run the same command to resume",
        spec,
        out_dir=out,
        address=address,
        workers=workers,
        overrides=parse_overrides(overrides),
        fresh=fresh,
        progress=not quiet,
        force=force,
    )
    typer.echo(result.report())
    _print_notes(result.notes)
    typer.echo(
        f"results: {result.out_dir}/ (selection.json, report.md, replications.parquet) · "
        f"{result.rows_simulated} rows simulated, {result.rows_reused} reused"
    )
    for f in result.failures[:20]:
        typer.echo(
            f"error: scenario {f['scenario_id']} · {f['architecture']} · replication "
            f"{f['replication']}: {one_line(str(f['error']), 300)}",
            err=True,
        )
    if result.failures:
        raise typer.Exit(code=1)


@command()
def prune(
    out_dir: Annotated[
        Path, typer.Argument(help="A results folder written by `distsim run`.", show_default=False)
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the rows that would be deleted.")
    ] = False,
) -> None:
    """Delete the stored rows that are outside the folder's current plan (its spec.yaml): rows of
    earlier specs, overrides or replication counts, which `distsim run` keeps and reuses. Lists
    what it removes. The rows of the current plan are never touched."""
    from distsim.runner.store import describe_rows
    from distsim.runner.study import prune as prune_rows

    try:
        plan, gone = prune_rows(out_dir, dry_run=dry_run)
    except DistsimError as exc:
        fail(str(exc))
        return
    verb = "would delete" if dry_run else "deleted"
    if gone.empty:
        typer.echo(f"nothing to delete: every stored row belongs to {plan.study.name}'s plan")
        return
    typer.echo(
        f"{verb} {len(gone)} stored row(s) outside the plan of {out_dir}/spec.yaml "
        f"({plan.study.name}), by scenario id:"
    )
    for line in describe_rows(gone):
        typer.echo(f"  {line}")


@command()
def schema() -> None:
    """Print the JSON Schema of a study spec (for editor completion and validation)."""
    from distsim.spec.study import Study

    typer.echo(json.dumps(Study.model_json_schema(), indent=2))


def main() -> None:
    """Entry point for `python -m distsim`."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
