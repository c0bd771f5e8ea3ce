"""``python -m bench [PART ...]``: measure, then print the report with each target's PASS or FAIL.

Parts: ``roundtrips``, ``imports``, ``invalidation``, ``coverage``; all of them when none is named. The exit
status is 0 whatever the figures: this is a report, not a test. ``load`` (many members signing in
with MFA at once, over HTTP, against ``python -m devstack run``) runs only when named.
"""
from __future__ import annotations

import argparse
import os
import platform
from datetime import date
from pathlib import Path
from statistics import median

from bench.coverage import SIZES as COVERAGE_SIZES
from bench.coverage import measure_coverage
from bench.coverage import report as coverage_report
from bench.imports import (
    APP,
    BARE,
    BASELINE,
    DEFERRED,
    FirstRequests,
    ImportCost,
    Samples,
    measure_first_requests,
    measure_import_cost,
)
from bench.invalidation import PLOT, SIZES, measure_invalidation, plot
from bench.invalidation import report as invalidation_report
from bench.load import ROUNDS, THREADS, USERS, measure_load
from bench.load import report as load_report
from bench.roundtrips import TARGETS as ROUND_TRIP_TARGETS
from bench.roundtrips import Measurement, measure_operations

PARTS = ("roundtrips", "imports", "invalidation", "coverage")
OPTIONAL_PARTS = ("load",)  # run only when named

# The cold-import target (`import app` over `import chalice, pynamodb.models`, whole processes,
# with cached bytecode); the round-trip targets are bench.roundtrips.TARGETS.
MAX_IMPORT_RATIO = 1.05


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _round_trip_report(measurements: list[Measurement]) -> list[str]:
    lines = ["## DynamoDB round trips per operation", "",
             "| Operation | Round trips | DynamoDB calls |", "|---|---:|---|"]
    for m in measurements:
        calls = ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in m.calls.items())
        lines.append(f"| {m.operation} | {m.round_trips} | {calls} |")
    by_name = {m.operation: m for m in measurements}
    lines.append("")
    for operation, target in ROUND_TRIP_TARGETS.items():
        measured = by_name[operation].round_trips
        lines.append(f"{_verdict(measured <= target)}: {operation} {measured} round trip(s) (target ≤ {target})")
    return lines


def _import_table(samples: Samples) -> list[str]:
    wall, cpu = samples.wall_ms, samples.cpu_ms
    lines = ["| Statement | Wall | Wall above bare | CPU | CPU above bare |", "|---|---:|---:|---:|---:|"]
    for statement in (BARE, BASELINE, APP):
        cells = []
        for figures in (wall, cpu):
            above = median(figures[statement]) - median(figures[BARE])
            cells += [f"{median(figures[statement]):.0f} ms", "–" if statement == BARE else f"{above:.0f} ms"]
        lines.append(f"| `{statement}` | {' | '.join(cells)} |")
    return lines


def _ratios(samples: Samples) -> str:
    whole = ImportCost.whole_process_ratio
    return (f"{whole(samples.wall_ms):.2f}× wall and {whole(samples.cpu_ms):.2f}× CPU as whole processes; "
            f"the import work alone {ImportCost.ratio(samples.wall_ms):.2f}× wall, "
            f"{ImportCost.ratio(samples.cpu_ms):.2f}× CPU")


def _import_report(cost: ImportCost) -> list[str]:
    lines = [f"## Cold import (medians of {len(cost.cached.wall_ms[APP])} fresh interpreters each)", "",
             "With cached bytecode (what the Lambda package's .pyc give):", "", *_import_table(cost.cached), "",
             "Compiling at every start (no bytecode, none written: a package without .pyc on Lambda):", "",
             *_import_table(cost.compiled), ""]
    ratio = ImportCost.whole_process_ratio(cost.cached.wall_ms)
    lines += [f"{_verdict(ratio <= MAX_IMPORT_RATIO)}: `import app` costs {ratio:.2f}× `{BASELINE}` as whole "
              f"processes with cached bytecode (target ≤ {MAX_IMPORT_RATIO:.2f}×): {_ratios(cost.cached)}",
              f"Compiling at every start: {_ratios(cost.compiled)}; `import app` takes "
              f"{median(cost.compiled.wall_ms[APP]) - median(cost.cached.wall_ms[APP]):.0f} ms more wall time "
              f"than with bytecode"]
    loaded = cost.deferred_loaded[APP]
    # Only what keyward itself pulls in counts: botocore loads cryptography (through pyOpenSSL)
    # for the baseline as well, and nothing in keyward can defer that.
    own = [module for module in loaded if module not in cost.deferred_loaded[BASELINE]]
    lines.append(f"{_verdict(not own)}: `import app` loads {' and '.join(own) or 'neither'} of "
                 f"{' and '.join(DEFERRED)} beyond what `{BASELINE}` loads (target: neither)")
    for module, chain in loaded.items():
        lines.append(f"  {module} via {' → '.join(chain)}")
        if module in cost.deferred_loaded[BASELINE]:
            lines.append(f"  {module} is loaded by `{BASELINE}` too, via "
                         f"{' → '.join(cost.deferred_loaded[BASELINE][module])}")
    return lines


def _first_requests_report(figures: FirstRequests) -> list[str]:
    rows = [("the whole process (wall)", figures.process_ms), ("`import app`", figures.import_ms),
            ("first authenticated `GET /me`", figures.me_ms), ("first MFA verify", figures.verify_ms),
            ("import + `GET /me` + MFA verify", figures.total_ms())]
    return [f"## First requests in a fresh process (medians of {len(figures.process_ms)}, cached bytecode)", "",
            "| Phase | Wall |", "|---|---:|", *(f"| {name} | {median(samples):.0f} ms |" for name, samples in rows)]


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
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"what to measure: {', '.join(PARTS + OPTIONAL_PARTS)} "
                             f"(default: all but {', '.join(OPTIONAL_PARTS)})")
    parser.add_argument("--sizes", type=_sizes, default=list(SIZES),
                        help="invalidation: sessions per organization, comma-separated "
                             f"(default: {','.join(str(size) for size in SIZES)})")
    parser.add_argument("--plot", type=Path, default=PLOT,
                        help="invalidation: where to write the SVG plot (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="invalidation: write no plot")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="invalidation: cProfile keyward's run of size N (one of --sizes) and print "
                             "the top entries to stderr")
    parser.add_argument("--members", type=_sizes, default=list(COVERAGE_SIZES),
                        help="coverage: members per organization, comma-separated "
                             f"(default: {','.join(str(size) for size in COVERAGE_SIZES)})")
    parser.add_argument("--users", type=int, default=USERS, help="load: members signing in (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="load: MFA sign-ins per member (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=THREADS, help="load: client threads (default: %(default)s)")
    arguments = parser.parse_args()
    unknown = [part for part in arguments.parts if part not in PARTS + OPTIONAL_PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS + OPTIONAL_PARTS)}")
    if arguments.profile is not None and arguments.profile not in arguments.sizes:
        parser.error(f"--profile {arguments.profile} is not one of --sizes")
    return arguments


def main() -> None:
    arguments = _arguments()
    parts = arguments.parts or PARTS
    print(f"# keyward bench — {date.today().isoformat()}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")
    if "roundtrips" in parts:
        print("\n".join(_round_trip_report(measure_operations())), end="\n\n", flush=True)
    if "imports" in parts:
        print("\n".join(_import_report(measure_import_cost())), end="\n\n", flush=True)
        print("\n".join(_first_requests_report(measure_first_requests())), end="\n\n", flush=True)
    if "invalidation" in parts:
        figures = measure_invalidation(arguments.sizes, profile_size=arguments.profile)
        print("\n".join(invalidation_report(figures)))
        if not arguments.no_plot:
            written = plot(figures, arguments.plot)
            print(f"\nPlot: {written}" if written else
                  "\nPlot skipped: matplotlib is not installed (pip install -r bench/requirements.txt)")
    if "coverage" in parts:
        print("\n".join(coverage_report(measure_coverage(arguments.members))), end="\n\n", flush=True)
    if "load" in parts:
        figures = measure_load(users=arguments.users, rounds=arguments.rounds, threads=arguments.threads)
        print("\n".join(load_report(figures)), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
