"""Bad input, fuzzed: every spec hypothesis can build is either a valid study or one line
`error: ...` with exit code 2 — no traceback, no hang, no NaN in what is printed.

Most examples go through `distsim validate` (Typer's CliRunner, in process, fast): a valid base
study with 1-3 mutations (a value replaced by something of the wrong type, an extreme or
non-finite number, unicode text; a field deleted; an unknown field added), sweeps with odd paths
and values, and data paths outside the spec folder (devices, FIFOs, folders, /proc files,
symlink loops, a valid CSV one folder up). A few real tiny runs (one local loopback Ray session
for the module) check that extreme but valid studies finish with no NaN in any report file.

Every invocation runs under an alarm (`time_limit`): a hang fails the test instead of blocking.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import math
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from distsim_testkit import study_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from distsim.cli import MAX_ERROR_CHARS, app

runner = CliRunner()
RATE = "workload.arrival.rate_rps"
INVOKE_LIMIT_S = 30  # generous: a validate takes milliseconds; only a hang gets near this

BASE = study_dict(name="fuzz", duration_s=20.0, warmup_s=2.0, replications=2)
MIX_BASE = study_dict(
    name="fuzzmix",
    duration_s=20.0,
    warmup_s=2.0,
    replications=2,
    workload={
        "arrival": {"process": "gamma", "rate_rps": 2.0, "cv": 2.0},
        "mix": [
            {"name": "chat", "weight": 3,
             "prompt_tokens": {"dist": "uniform", "low": 10, "high": 500},
             "output_tokens": {"dist": "exponential", "mean": 200, "max": 4000}},
            {"name": "code", "weight": 1,
             "prompt_tokens": {"dist": "constant", "value": 1500},
             "output_tokens": {"dist": "lognormal", "mu": 5.0, "sigma": 1.0}},
        ],
    },
    sweep={RATE: [1.0, 2.0]},
)  # fmt: skip


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread if the block runs longer than `seconds`."""

    def _alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


_NAN = re.compile(r"(?<![A-Za-z])(nan|NaN|inf)(?![A-Za-z])")


def invoke(*args: Any) -> Any:
    with time_limit(INVOKE_LIMIT_S):
        return runner.invoke(app, [str(a) for a in args])


def assert_valid_or_one_line(result: Any, *, allow_nan_text: str = "") -> str:
    """Exit 0 with a plan, or exit 2 with exactly one `error:` line; never a traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"escaped exception:\n{tb}")
    out, err = result.stdout, result.stderr
    assert "Traceback" not in out + err
    if result.exit_code == 2:
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: "), err
        assert len(lines[0]) <= len("error: ") + MAX_ERROR_CHARS
        return "error"
    assert result.exit_code == 0, (result.exit_code, out, err)
    assert ": valid" in out.splitlines()[0]
    text = out.replace(allow_nan_text, "") if allow_nan_text else out
    assert not _NAN.search(text), out
    return "valid"


# ---------------------------------------------------------------- strategies

NASTY_NUMBERS = [0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), 10**400,
                 math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 1e-300, 0.5]  # fmt: skip
NASTY_TEXT = ["", " ", "auto", "poisson", "lognormal", "monolithic", "disaggregated", "1e3",
              "../../etc/passwd", "/dev/zero", "日本語", "🚀🚀", "a\nb", "x\x00y", "ñame", "-",
              "a.b", "${HOME}", "!!python/object:os.system", "yes", "null"]  # fmt: skip

nasty_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(NASTY_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_TEXT),
)
nasty_value = st.one_of(
    nasty_scalar,
    st.lists(nasty_scalar, max_size=4),
    st.dictionaries(st.text(max_size=8), nasty_scalar, max_size=3),
)


def paths_of(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (tuples of keys / list indices) of nested dicts and lists."""
    out: list[tuple] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append((*prefix, k))
            out += paths_of(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.append((*prefix, i))
            out += paths_of(v, (*prefix, i))
    return out


def _parent(data: Any, path: tuple) -> Any:
    node = data
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated_spec(draw: st.DrawFn) -> dict:
    """A valid base study with 1-3 mutations."""
    data = copy.deepcopy(draw(st.sampled_from([BASE, MIX_BASE])))
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(data)
        action = draw(st.sampled_from(["replace", "replace", "delete", "extra", "scale"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        key = path[-1]
        if action == "replace":
            parent[key] = draw(nasty_value)
        elif action == "delete":
            del parent[key]
        elif action == "extra":
            target = parent[key] if isinstance(parent[key], dict) else parent
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=12))] = draw(nasty_scalar)
        elif (
            action == "scale"
            and isinstance(parent[key], int | float)
            and not isinstance(parent[key], bool)
        ):
            parent[key] = parent[key] * draw(st.sampled_from([-1, 0, 1e-12, 1e6, 1e12, 1e300]))
    return data


sweep_path = st.one_of(
    st.sampled_from([RATE, "duration_s", "warmup_s", "seed", "gpu.prefill_tokens_per_s",
                     "architectures.monolithic.gpus", "architectures.disaggregated.prefill_gpus",
                     "workload.prompt_tokens.mu", "workload", "replications", "name",
                     "nosuch.path", "workload.arrival", "", ".", "workload..x", "gpu.nope"]),
    st.text(max_size=25),
)  # fmt: skip


@st.composite
def swept_spec(draw: st.DrawFn) -> dict:
    data = copy.deepcopy(BASE)
    sweep = draw(
        st.dictionaries(
            sweep_path,
            st.one_of(st.lists(nasty_value, max_size=6), nasty_scalar),
            min_size=1,
            max_size=3,
        )
    )
    data["sweep"] = sweep
    if draw(st.booleans()):
        data["scenarios"] = draw(
            st.one_of(
                st.lists(st.dictionaries(sweep_path, nasty_value, max_size=2), max_size=3),
                nasty_scalar,
            )
        )
    return data


# Valid input, so that a validator refusing every sweep or every override cannot pass: values in
# the ranges the spec accepts, for paths that exist (duration_s stays above the 2 s warm-up).
VALID_VALUES = {
    RATE: st.floats(0.1, 20.0),
    "duration_s": st.floats(5.0, 60.0),
    "seed": st.integers(0, 2**63 - 1),
    "gpu.prefill_tokens_per_s": st.floats(500.0, 1e6),
    "architectures.monolithic.gpus": st.integers(1, 16),
    "architectures.disaggregated.prefill_gpus": st.integers(1, 8),
    "workload.prompt_tokens.mu": st.floats(1.0, 8.0),
}


@st.composite
def valid_sweep(draw: st.DrawFn) -> tuple[dict, int]:
    """A study sweeping 1-3 existing fields over distinct valid values, and its scenario count."""
    paths = draw(st.lists(st.sampled_from(sorted(VALID_VALUES)), min_size=1, max_size=3,
                          unique=True))  # fmt: skip
    sweep = {p: draw(st.lists(VALID_VALUES[p], min_size=1, max_size=4, unique=True)) for p in paths}
    return copy.deepcopy(BASE) | {"sweep": sweep}, math.prod(len(v) for v in sweep.values())


valid_sets = st.lists(
    st.sampled_from(sorted(VALID_VALUES)).flatmap(
        lambda p: VALID_VALUES[p].map(lambda v, p=p: (p, repr(v)))
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda pv: pv[0],
)


def runs(spec: Path, *extra: str) -> dict:
    """`distsim simulate` of the first scenario's baseline: exit 0 and its metrics as JSON."""
    result = invoke("simulate", spec, "--arch", "monolithic", "--json", *extra)
    assert result.exit_code == 0 and result.exception is None, (result.stdout, result.stderr)
    metrics = json.loads(result.stdout)
    assert metrics["n_requests"] >= 0
    return metrics


# ---------------------------------------------------------------- the fuzz tests


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A spec folder inside a parent that also holds a valid CSV (a path outside the folder)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "outside.csv").write_text(
        "arrival_s,prompt_tokens,output_tokens\n"
        + "".join(f"{i * 0.5},{100 + i},{50 + i}\n" for i in range(200)),
        encoding="utf-8",
    )
    spec_dir = root / "specs"
    spec_dir.mkdir()
    (spec_dir / "folder").mkdir()
    os.mkfifo(spec_dir / "fifo.csv")
    (spec_dir / "loop.csv").symlink_to(spec_dir / "loop.csv")
    (spec_dir / "to_fifo.csv").symlink_to(spec_dir / "fifo.csv")
    return spec_dir


# CI runs the same 150 examples per test every time; DISTSIM_FUZZ_EXAMPLES=5000 searches wider
# (random examples) on a developer machine.
_WIDE = int(os.environ.get("DISTSIM_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_WIDE or 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=not _WIDE,
)


def test_mutated_specs_are_valid_or_one_line_errors(folder):
    """Some mutations leave a valid study (a scaled number, a deleted optional field): at least
    5% of the examples must validate (8% do), so a validator refusing everything fails."""
    outcomes: collections.Counter[str] = collections.Counter()

    @FUZZ
    @given(data=mutated_spec())
    def check(data: dict) -> None:
        outcome = assert_valid_or_one_line(invoke("validate", write(folder / "m.yaml", data)))
        if data in (BASE, MIX_BASE):
            assert outcome == "valid"
        outcomes[outcome] += 1

    check()
    assert outcomes["valid"] >= 0.05 * sum(outcomes.values()), outcomes


def test_sweeps_and_explicit_points_are_valid_or_one_line_errors(folder):
    """Half the examples are valid sweeps (their share of `valid` outcomes is checked), half odd
    paths and values; every one is valid or one line."""
    outcomes: collections.Counter[str] = collections.Counter()

    @FUZZ
    @given(data=st.one_of(valid_sweep().map(lambda dc: dc[0]), swept_spec()))
    def check(data: dict) -> None:
        outcomes[assert_valid_or_one_line(invoke("validate", write(folder / "s.yaml", data)))] += 1

    check()
    assert outcomes["valid"] >= 0.3 * sum(outcomes.values()), outcomes


@settings(FUZZ, max_examples=_WIDE or 40)
@given(case=valid_sweep())
def test_valid_sweeps_plan_every_point_and_run(folder, case):
    data, count = case
    spec = write(folder / "v.yaml", data)
    result = invoke("validate", spec)
    assert assert_valid_or_one_line(result) == "valid"
    assert re.search(rf"^  scenarios\s+{count}$", result.stdout, re.M), (count, result.stdout)
    runs(spec)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.sampled_from([
            "", "- a\n- b", "42", "name: [", "{a: 1", "!!python/object/apply:os.system ['true']",
            "name: !!python/name:os.system", "a: &x [*x]", "? [a]\n: 1", "\ufeffname: x",
            "name: x\nname: y", "%YAML 9.9\n---\na: 1", "--- \n...\n--- \n",
        ]),
    )
)  # fmt: skip
def test_arbitrary_yaml_text_is_valid_or_one_line_error(folder, text):
    spec = folder / "t.yaml"
    spec.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_valid_or_one_line(invoke("validate", spec))


@FUZZ
@given(
    sets=st.lists(
        st.tuples(sweep_path, st.one_of(st.text(max_size=30), st.sampled_from(NASTY_TEXT + [
            "[1, 2]", "{a: 1}", "-1", ".nan", ".inf", "1e400", "[&a [1], *a]", "!!binary YQ==",
            "!!python/object/apply:os.system ['true']", "'", "[", "null"])))
        , min_size=1, max_size=3),
    replications=st.one_of(st.none(), st.integers(-5, 10**7).map(str), st.sampled_from(["x", ""])),
)  # fmt: skip
def test_command_line_overrides_are_valid_or_one_line_errors(folder, sets, replications):
    args: list[str] = ["validate", str(write(folder / "o.yaml", BASE))]
    for path, value in sets:
        args += ["--set", f"{path}={value}"]
    if replications is not None:
        args += ["--replications", replications]
    result = invoke(*args)
    if result.exit_code == 2 and "Usage:" in result.stderr:  # Typer's own message for a bad
        return  # option value (e.g. --replications x): one usage block, still no traceback
    assert_valid_or_one_line(result)


@settings(FUZZ, max_examples=_WIDE or 40)
@given(sets=valid_sets, replications=st.integers(2, 50))
def test_valid_overrides_are_accepted_and_run(folder, sets, replications):
    spec = write(folder / "vo.yaml", BASE)
    args = [a for path, value in sets for a in ("--set", f"{path}={value}")]
    result = invoke("validate", spec, *args, "--replications", replications)
    assert assert_valid_or_one_line(result) == "valid"
    assert f"replications   {replications} per scenario" in result.stdout
    runs(spec, *args)


DATA_PATHS = [
    "../outside.csv",  # valid, one folder up: allowed (paths are resolved against the spec)
    "/dev/zero", "/dev/null", "/dev/stdin", "/proc/self/status", "/etc/passwd", "/", "folder",
    "fifo.csv", "to_fifo.csv", "loop.csv", "missing.csv", "~", "", "a\x00b", "../" * 40,
    "日本.csv",
]  # fmt: skip


@settings(FUZZ, max_examples=_WIDE or 60)
@given(
    path=st.one_of(st.sampled_from(DATA_PATHS), st.text(max_size=30)),
    where=st.sampled_from(["trace", "empirical", "set"]),
)
def test_data_paths_inside_outside_or_special_are_read_safely(folder, path, where):
    data = copy.deepcopy(BASE)
    extra: list[str] = []
    if where == "trace":
        data["workload"] = {"trace": {"path": path, "mode": "replay"}}
    elif where == "empirical":
        data["workload"]["prompt_tokens"] = {"dist": "empirical", "path": path,
                                             "column": "prompt_tokens"}  # fmt: skip
    else:
        data["workload"] = {"trace": {"path": "../outside.csv", "mode": "replay"}}
        extra = ["--set", f"workload.trace.path={path}"]
    spec = write(folder / "p.yaml", data)
    cwd = os.getcwd()
    os.chdir(folder)  # --set paths are relative to the working directory
    try:
        outcome = assert_valid_or_one_line(invoke("validate", spec, *extra))
    finally:
        os.chdir(cwd)
    if path == "../outside.csv" and where != "set":
        assert outcome == "valid"
    if path in ("/dev/zero", "/dev/stdin", "fifo.csv", "to_fifo.csv", "folder", "/"):
        assert outcome == "error"


# ---------------------------------------------------------------- regressions the fuzzer found


def _with(path: tuple, value: Any) -> dict:
    data = copy.deepcopy(BASE)
    _parent(data, path)[path[-1]] = value
    return data


FOUND = {
    # min above the 2**53 token ceiling: an IndexError in the expected-size computation.
    "token_min_above_ceiling": _with(("workload", "prompt_tokens", "min"), 2**53 + 1),
    "token_max_above_ceiling": _with(("workload", "output_tokens", "max"), 2**64),
    # A control character in an unknown key split the error into two lines.
    "record_separator_key": BASE | {"\x1e": None},
    # NUL byte / symlink loop in a data path: ValueError / RuntimeError from Path.resolve.
    "nul_in_trace_path": BASE | {"workload": {"trace": {"path": "a\x00b", "mode": "replay"}}},
    "symlink_loop_trace": BASE | {"workload": {"trace": {"path": "loop.csv", "mode": "replay"}}},
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_regressions_found_by_the_fuzzer(folder, case):
    result = invoke("validate", write(folder / f"{case}.yaml", FOUND[case]))
    assert assert_valid_or_one_line(result) == "error"


# ---------------------------------------------------------------- targeted: size and nesting


def test_huge_sweeps_are_refused_at_once_or_estimated(folder):
    # More scenarios than the limit: refused before any is built.
    data = copy.deepcopy(BASE)
    data["sweep"] = {RATE: [1.0 + i / 1e4 for i in range(10_001)]}
    result = invoke("validate", write(folder / "h1.yaml", data))
    assert assert_valid_or_one_line(result) == "error"
    assert "limit" in result.stderr
    # A grid within the scenario limit but 1e6 replications: refused with the estimate (this
    # used to build 2e8 units and hang), and passes with --force.
    data["sweep"] = {RATE: [1.0 + i / 100 for i in range(100)]}
    data["replications"] = 1_000_000
    result = invoke("validate", write(folder / "h2.yaml", data))
    assert assert_valid_or_one_line(result) == "error"
    assert "study too large" in result.stderr and "simulated requests" in result.stderr
    forced = invoke("validate", folder / "h2.yaml", "--force")
    assert assert_valid_or_one_line(forced) == "valid"
    assert "200,000,000 (scenario x architecture x replication)" in forced.stdout


def test_alias_bombs_and_deep_nesting_are_one_line_errors(folder):
    levels = "".join(
        f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
    )  # 9**9 values once expanded
    bomb = yaml.safe_dump(BASE, sort_keys=False) + "scenarios:\n  - &l0 [lol]\n" + levels
    (folder / "bomb.yaml").write_text(bomb, encoding="utf-8")
    result = invoke("validate", folder / "bomb.yaml")
    assert assert_valid_or_one_line(result) == "error"
    assert "more than 1,000,000 values" in result.stderr
    deep = yaml.safe_dump(BASE, sort_keys=False) + "sweep: {x: " + "[" * 5000 + "]" * 5000 + "}\n"
    (folder / "deep.yaml").write_text(deep, encoding="utf-8")
    result = invoke("validate", folder / "deep.yaml")
    assert assert_valid_or_one_line(result) == "error"
    assert "nested too deeply" in result.stderr
    flow = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10))
    setbomb = invoke("validate", write(folder / "ok.yaml", BASE), "--set",
                     f"sweep={{x: [&a0 [1], {flow[1:]}]}}")  # fmt: skip
    assert assert_valid_or_one_line(setbomb) == "error"


def test_long_and_multiline_values_still_give_one_line(folder):
    data = copy.deepcopy(BASE)
    data["workload"]["arrival"]["process"] = "x" * 100_000 + "\nsecond line"
    result = invoke("validate", write(folder / "long.yaml", data))
    assert assert_valid_or_one_line(result) == "error"
    data = copy.deepcopy(BASE)
    data["sweep"] = {"bad\npath": [1]}
    assert assert_valid_or_one_line(invoke("validate", write(folder / "nl.yaml", data))) == "error"


def test_unsafe_yaml_tags_are_refused_and_never_run(folder, tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f"!!python/object/apply:os.system ['touch {marker}']",
        f"!!python/object/apply:subprocess.call [['touch', '{marker}']]",
        "!!python/name:os.system",
        "!!python/module:os",
    ]
    for payload in payloads:
        text = yaml.safe_dump(BASE, sort_keys=False).replace("name: fuzz", f"name: {payload}")
        (folder / "tag.yaml").write_text(text, encoding="utf-8")
        result = invoke("validate", folder / "tag.yaml")
        assert assert_valid_or_one_line(result) == "error"
        assert "invalid YAML" in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- a few real tiny runs


EXTREME_VALID = {
    # Almost no requests: every latency metric is undefined.
    "no_requests": {"workload": {**BASE["workload"], "arrival": {"process": "poisson",
                                                                  "rate_rps": 1e-4}}},
    # Bursty arrivals (cv 100), huge token counts capped by max.
    "bursty_huge_tokens": {"workload": {
        "arrival": {"process": "gamma", "rate_rps": 3.0, "cv": 100},
        "prompt_tokens": {"dist": "lognormal", "mu": 40.0, "sigma": 5.0, "max": 100_000},
        "output_tokens": {"dist": "constant", "value": 1, "min": 1},
    }},
    # Far overloaded, warm-up nearly the whole run, the largest seed.
    "overloaded": {"seed": 2**63 - 1, "warmup_s": 19.9,
                   "workload": {**BASE["workload"], "arrival": {"process": "poisson",
                                                                "rate_rps": 500.0}}},
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EXTREME_VALID))
def test_extreme_but_valid_studies_run_with_no_nan_in_any_report(ray_session, folder, case):
    data = copy.deepcopy(BASE) | {"name": case, "replications": 3} | EXTREME_VALID[case]
    spec = write(folder / f"{case}.yaml", data)
    out = folder.parent / f"out-{case}"
    result = invoke("run", spec, "--out", out, "--quiet")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.stderr
    assert not _NAN.search(result.stdout), result.stdout
    for name in ("summary.csv", "comparisons.csv", "report.md"):
        text = (out / name).read_text(encoding="utf-8")
        assert not _NAN.search(text), (name, text[:2000])

    def no_constants(name: str) -> None:
        raise AssertionError(f"summary.json holds {name}")

    json.loads((out / "summary.json").read_text(encoding="utf-8"), parse_constant=no_constants)
