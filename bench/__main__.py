"""``python -m bench [PART ...]``: measure, then print the report with each target's PASS or FAIL.

Parts: ``roundtrips``, ``imports``, ``invalidation``, ``coverage``, ``capacity``; all of them when none
is named. The exit status is 0 whatever the figures: this is a report, not a test. ``load`` (many members signing in
with MFA at once, over HTTP, against ``python -m devstack run``) and ``package`` (the Lambda package
as chalice makes it against the pruned one: size and cold start) run only when named.

Round trips, the cold import and the first requests are measured for an earlier commit too
(``--baseline REF``, :mod:`bench.baseline`) in the same run, and printed next to the current code's.
So is the capacity model (:mod:`bench.capacity`), against today's design unless
``--capacity-baseline REF`` names another commit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
from datetime import date
from pathlib import Path
from statistics import median

from bench.baseline import DEFAULT_REF, BaselineUnavailable, Tree, baseline_tree
from bench.capacity import DEFAULT_REF as CAPACITY_REF
from bench.capacity import SIGN_INS, capacity_in, measure_capacity
from bench.capacity import report as capacity_report
from bench.coverage import SIZES as COVERAGE_SIZES
from bench.coverage import measure_coverage
from bench.coverage import report as coverage_report
from bench.imports import (
    APP,
    BARE,
    BASELINE,
    DEFERRED,
    OLD_APP,
    FirstRequests,
    FirstRequestsCompared,
    ImportCost,
    Samples,
    measure_first_requests,
    measure_import_cost,
)
from bench.instructions import Instructions, measure_instructions
from bench.invalidation import PLOT, SIZES, measure_invalidation, plot
from bench.invalidation import report as invalidation_report
from bench.load import ROUNDS, THREADS, USERS, measure_load
from bench.load import report as load_report
from bench.package import RUNS as PACKAGE_RUNS
from bench.package import measure_package
from bench.package import report as package_report
from bench.roundtrips import TARGETS as ROUND_TRIP_TARGETS
from bench.roundtrips import Measurement, measure_operations, measure_operations_in

PARTS = ("roundtrips", "imports", "invalidation", "coverage", "capacity")
# The parts that measure the baseline tree too.
COMPARED_PARTS = ("roundtrips", "imports")
OPTIONAL_PARTS = ("load", "package")  # run only when named

# The cold-import target (`import app` over `import chalice, pynamodb.models`, whole processes,
# with cached bytecode); the round-trip targets are bench.roundtrips.TARGETS.
MAX_IMPORT_RATIO = 1.05


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _calls(m: Measurement) -> str:
    return ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in m.calls.items())


def _round_trip_report(
    measurements: list[Measurement], old: list[Measurement] | str | None = None, old_tree: Tree | None = None
) -> list[str]:
    lines = ["## DynamoDB round trips per operation", ""]
    if old is None:
        lines += ["| Operation | Round trips | DynamoDB calls |", "|---|---:|---|"]
        lines += [f"| {m.operation} | {m.round_trips} | {_calls(m)} |" for m in measurements]
    else:
        old_by_name = {} if isinstance(old, str) else {m.operation: m for m in old}
        lines += [
            f"| Operation | Old ({old_tree.name if old_tree else '–'}) | New "
            "| DynamoDB calls now | DynamoDB calls before |",
            "|---|---:|---:|---|---|",
        ]
        for m in measurements:
            before = old_by_name.get(m.operation)
            figure = "–" if before is None or before.missing else str(before.round_trips)
            calls_before = "–" if before is None else (before.missing or _calls(before))
            lines.append(f"| {m.operation} | {figure} | {m.round_trips} | {_calls(m)} | {calls_before} |")
        if isinstance(old, str):
            lines += ["", f"The old code's journey did not run: {old}"]
    by_name = {m.operation: m for m in measurements}
    lines.append("")
    for operation, target in ROUND_TRIP_TARGETS.items():
        measured = by_name[operation].round_trips
        lines.append(f"{_verdict(measured <= target)}: {operation} {measured} round trip(s) (target ≤ {target})")
    return lines


def _import_table(samples: Samples, old_tree: Tree | None) -> list[str]:
    wall, cpu = samples.wall_ms, samples.cpu_ms
    lines = ["| Statement | Wall | Wall above bare | CPU | CPU above bare |", "|---|---:|---:|---:|---:|"]
    for statement in wall:
        cells = []
        for figures in (wall, cpu):
            above = median(figures[statement]) - median(figures[BARE])
            cells += [f"{median(figures[statement]):.0f} ms", "–" if statement == BARE else f"{above:.0f} ms"]
        name = f"`{APP}`, old ({old_tree.name if old_tree else '–'})" if statement == OLD_APP else f"`{statement}`"
        if statement == APP and OLD_APP in wall:
            name += ", new"
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def _ratios(samples: Samples, app: str = APP) -> str:
    whole = ImportCost.whole_process_ratio
    return (
        f"{whole(samples.wall_ms, app):.2f}× wall and {whole(samples.cpu_ms, app):.2f}× CPU as whole processes; "
        f"the import work alone {ImportCost.ratio(samples.wall_ms, app):.2f}× wall, "
        f"{ImportCost.ratio(samples.cpu_ms, app):.2f}× CPU"
    )


def _import_report(cost: ImportCost) -> list[str]:
    lines = [
        f"## Cold import (medians of {len(cost.cached.wall_ms[APP])} fresh interpreters each)",
        "",
        "With cached bytecode (what the Lambda package's .pyc give):",
        "",
        *_import_table(cost.cached, cost.old_tree),
        "",
        "Compiling at every start (no bytecode, none written: a package without .pyc on Lambda):",
        "",
        *_import_table(cost.compiled, cost.old_tree),
        "",
    ]
    ratio = ImportCost.whole_process_ratio(cost.cached.wall_ms)
    lines += [
        f"{_verdict(ratio <= MAX_IMPORT_RATIO)}: `import app` costs {ratio:.2f}× `{BASELINE}` as whole "
        f"processes with cached bytecode (target ≤ {MAX_IMPORT_RATIO:.2f}×): {_ratios(cost.cached)}",
        f"Compiling at every start: {_ratios(cost.compiled)}; `import app` takes "
        f"{median(cost.compiled.wall_ms[APP]) - median(cost.cached.wall_ms[APP]):.0f} ms more wall time "
        f"than with bytecode",
    ]
    if cost.old_missing is not None:
        lines.append(f"Old ({cost.old_tree.name}): – (its `import app` failed: {cost.old_missing})")
    elif cost.old_tree is not None:
        lines += [
            f"Old ({cost.old_tree.name}), cached bytecode: {_ratios(cost.cached, OLD_APP)}",
            f"Old ({cost.old_tree.name}), compiling at every start: {_ratios(cost.compiled, OLD_APP)}",
        ]
    loaded = cost.deferred_loaded[APP]
    # Only what keyward itself pulls in counts: botocore loads cryptography (through pyOpenSSL)
    # for the baseline as well, and nothing in keyward can defer that.
    own = [module for module in loaded if module not in cost.deferred_loaded[BASELINE]]
    lines.append(
        f"{_verdict(not own)}: `import app` loads {' and '.join(own) or 'neither'} of "
        f"{' and '.join(DEFERRED)} beyond what `{BASELINE}` loads (target: neither)"
    )
    for module, chain in loaded.items():
        lines.append(f"  {module} via {' → '.join(chain)}")
        if module in cost.deferred_loaded[BASELINE]:
            lines.append(
                f"  {module} is loaded by `{BASELINE}` too, via {' → '.join(cost.deferred_loaded[BASELINE][module])}"
            )
    return lines


def _phases(figures: FirstRequests) -> list[list[float]]:
    return [figures.process_ms, figures.import_ms, figures.me_ms, figures.verify_ms, figures.total_ms()]


def _first_requests_report(compared: FirstRequestsCompared) -> list[str]:
    names = [
        "the whole process (wall)",
        "`import app`",
        "first authenticated `GET /me`",
        "first MFA verify",
        "import + `GET /me` + MFA verify",
    ]
    new = _phases(compared.new)
    lines = [f"## First requests in a fresh process (medians of {len(compared.new.process_ms)}, cached bytecode)", ""]
    if compared.old_tree is None:
        return lines + [
            "| Phase | Wall |",
            "|---|---:|",
            *(f"| {name} | {median(samples):.0f} ms |" for name, samples in zip(names, new, strict=True)),
        ]
    old = _phases(compared.old) if compared.old is not None else [None] * len(names)
    lines += [f"| Phase | Old ({compared.old_tree.name}) | New |", "|---|---:|---:|"]
    for name, before, now in zip(names, old, new, strict=True):
        lines.append(f"| {name} | {'–' if before is None else f'{median(before):.0f} ms'} | {median(now):.0f} ms |")
    if compared.old_missing is not None:
        lines += ["", f"The old code's first requests did not run: {compared.old_missing}"]
    else:
        lines += ["", "Old and new processes ran in turn, one of each per round."]
    return lines


def _instructions_report(found: Instructions) -> list[str]:
    lines = [
        "## Instructions of the cold import (valgrind's callgrind, cached bytecode, one process each)",
        "",
        f"| Statement | Instructions | Over `{BASELINE}` |",
        "|---|---:|---:|",
    ]
    for label, count in found.counts.items():
        name = f"`{APP}`, old ({found.old_tree.name})" if label == OLD_APP and found.old_tree else f"`{label}`"
        if label == APP and OLD_APP in found.counts:
            name += ", new"
        if isinstance(count, int):
            ratio = found.ratio(label) if label in (APP, OLD_APP) else None
            lines.append(f"| {name} | {count / 1e6:,.0f} M | {'–' if ratio is None else f'{ratio:.3f}×'} |")
        else:
            lines.append(f"| {name} | – ({count}) | – |")
    return lines


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(size.replace("_", "")) for size in text.split(",") if size.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "parts",
        nargs="*",
        metavar="PART",
        help=f"what to measure: {', '.join(PARTS + OPTIONAL_PARTS)} (default: all but {', '.join(OPTIONAL_PARTS)})",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(SIZES),
        help="invalidation: sessions per organization, comma-separated "
        f"(default: {','.join(str(size) for size in SIZES)})",
    )
    parser.add_argument(
        "--plot", type=Path, default=PLOT, help="invalidation: where to write the SVG plot (default: %(default)s)"
    )
    parser.add_argument("--no-plot", action="store_true", help="invalidation: write no plot")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="invalidation: cProfile keyward's run of size N (one of --sizes) and print the top entries to stderr",
    )
    parser.add_argument(
        "--members",
        type=_sizes,
        default=list(COVERAGE_SIZES),
        help="coverage: members per organization, comma-separated "
        f"(default: {','.join(str(size) for size in COVERAGE_SIZES)})",
    )
    parser.add_argument(
        "--baseline",
        default=DEFAULT_REF,
        metavar="REF",
        help="roundtrips, imports: the git commit measured next to the current code (default: %(default)s)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=15,
        help="imports: fresh interpreters per statement, and first-request processes per tree (default: %(default)s)",
    )
    parser.add_argument(
        "--no-instructions",
        action="store_true",
        help="imports: skip counting instructions with valgrind's callgrind (minutes per process)",
    )
    parser.add_argument(
        "--capacity-baseline",
        default=CAPACITY_REF,
        metavar="REF",
        help="capacity: the git commit whose key design is modelled next to the current code's (default: %(default)s, "
        "today's design)",
    )
    parser.add_argument(
        "--sign-ins",
        type=int,
        default=SIGN_INS,
        help="capacity: sign-ins replayed in the storm (default: %(default)s)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="roundtrips, imports, capacity: measure the current code only"
    )
    parser.add_argument("--users", type=int, default=USERS, help="load: members signing in (default: %(default)s)")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="load: MFA sign-ins per member (default: %(default)s)"
    )
    parser.add_argument(
        "--package-runs",
        type=int,
        default=PACKAGE_RUNS,
        help="package: fresh processes of each package (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=THREADS, help="load: client threads (default: %(default)s)")
    arguments = parser.parse_args()
    unknown = [part for part in arguments.parts if part not in PARTS + OPTIONAL_PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS + OPTIONAL_PARTS)}")
    if arguments.profile is not None and arguments.profile not in arguments.sizes:
        parser.error(f"--profile {arguments.profile} is not one of --sizes")
    return arguments


def _capacity(arguments: argparse.Namespace) -> list[str]:
    """The storm against the current code, in this process, while the baseline's runs in its own."""
    if arguments.no_baseline:
        return capacity_report(measure_capacity(arguments.sign_ins))
    try:
        with baseline_tree(arguments.capacity_baseline) as old_tree, capacity_in(old_tree, arguments.sign_ins) as old:
            new = measure_capacity(arguments.sign_ins)
            return capacity_report(new, old(), old_tree)
    except BaselineUnavailable as failed:
        return capacity_report(measure_capacity(arguments.sign_ins), str(failed))


def main() -> None:
    arguments = _arguments()
    parts = arguments.parts or PARTS
    print(
        f"# keyward bench — {date.today().isoformat()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    with contextlib.ExitStack() as cleanup:
        old, unavailable = None, None
        if not arguments.no_baseline and set(parts) & set(COMPARED_PARTS):
            try:
                old = cleanup.enter_context(baseline_tree(arguments.baseline))
            except BaselineUnavailable as failed:
                unavailable = str(failed)
        if "roundtrips" in parts:
            new = measure_operations()
            before = unavailable or (measure_operations_in(old) if old else None)
            print("\n".join(_round_trip_report(new, before, old)), end="\n\n", flush=True)
        if "imports" in parts:
            if unavailable:
                print(f"The old code: – ({unavailable})\n")
            print("\n".join(_import_report(measure_import_cost(arguments.runs, old=old))), end="\n\n", flush=True)
            if not arguments.no_instructions:
                print("\n".join(_instructions_report(measure_instructions(old=old))), end="\n\n", flush=True)
            print(
                "\n".join(_first_requests_report(measure_first_requests(arguments.runs, old=old))),
                end="\n\n",
                flush=True,
            )
    if "invalidation" in parts:
        figures = measure_invalidation(arguments.sizes, profile_size=arguments.profile)
        print("\n".join(invalidation_report(figures)))
        if not arguments.no_plot:
            written = plot(figures, arguments.plot)
            print(
                f"\nPlot: {written}"
                if written
                else "\nPlot skipped: matplotlib is not installed (pip install -r bench/requirements.txt)"
            )
    if "coverage" in parts:
        print("\n".join(coverage_report(measure_coverage(arguments.members))), end="\n\n", flush=True)
    if "capacity" in parts:
        print("\n".join(_capacity(arguments)), end="\n\n", flush=True)
    if "load" in parts:
        figures = measure_load(users=arguments.users, rounds=arguments.rounds, threads=arguments.threads)
        print("\n".join(load_report(figures)), end="\n\n", flush=True)
    if "package" in parts:
        old, new = measure_package(runs=arguments.package_runs)
        print("\n".join(package_report(old, new)), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
