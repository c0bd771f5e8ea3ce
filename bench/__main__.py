"""``python -m bench``: measure, then print the report with each target's PASS or FAIL.

The exit status is 0 whatever the figures: this is a report, not a test.
"""
from __future__ import annotations

import os
import platform
from datetime import date
from statistics import median

from bench.imports import APP, BARE, BASELINE, DEFERRED, ImportCost, measure_import_cost
from bench.roundtrips import Measurement, measure_operations

# Targets from the performance issue.
MAX_AUTHENTICATED_ROUND_TRIPS = 1
MAX_MFA_VERIFY_ROUND_TRIPS = 4
MAX_IMPORT_RATIO = 1.15


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _round_trip_report(measurements: list[Measurement]) -> list[str]:
    lines = ["## DynamoDB round trips per operation", "",
             "| Operation | Round trips | DynamoDB calls |", "|---|---:|---|"]
    for m in measurements:
        calls = ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in m.calls.items())
        lines.append(f"| {m.operation} | {m.round_trips} | {calls} |")
    by_name = {m.operation: m for m in measurements}
    authenticated = by_name["authenticated GET /me"].round_trips
    verify = by_name["MFA verify"].round_trips
    lines += ["",
              f"{_verdict(authenticated <= MAX_AUTHENTICATED_ROUND_TRIPS)}: authenticated request "
              f"{authenticated} round trip(s) (target ≤ {MAX_AUTHENTICATED_ROUND_TRIPS})",
              f"{_verdict(verify <= MAX_MFA_VERIFY_ROUND_TRIPS)}: MFA verify "
              f"{verify} round trip(s) (target ≤ {MAX_MFA_VERIFY_ROUND_TRIPS})"]
    return lines


def _import_report(cost: ImportCost) -> list[str]:
    wall, cpu = cost.wall_ms, cost.cpu_ms
    lines = [f"## Cold import (medians of {len(wall[APP])} fresh interpreters each)", "",
             "| Statement | Wall | Wall above bare | CPU | CPU above bare |", "|---|---:|---:|---:|---:|"]
    for statement in (BARE, BASELINE, APP):
        cells = []
        for samples in (wall, cpu):
            above = median(samples[statement]) - median(samples[BARE])
            cells += [f"{median(samples[statement]):.0f} ms", "–" if statement == BARE else f"{above:.0f} ms"]
        lines.append(f"| `{statement}` | {' | '.join(cells)} |")
    ratio = cost.ratio(wall)
    lines += ["", f"{_verdict(ratio <= MAX_IMPORT_RATIO)}: `import app` costs {ratio:.2f}× "
              f"`{BASELINE}` in wall time (target ≤ {MAX_IMPORT_RATIO:.2f}×; in CPU time {cost.ratio(cpu):.2f}×)"]
    loaded = cost.deferred_loaded[APP]
    lines.append(f"{_verdict(not loaded)}: `import app` loads {' and '.join(loaded) or 'neither'} "
                 f"(target: neither {' nor '.join(DEFERRED)})")
    for module, chain in loaded.items():
        lines.append(f"  {module} via {' → '.join(chain)}")
        if module in cost.deferred_loaded[BASELINE]:
            lines.append(f"  {module} is loaded by `{BASELINE}` too, via "
                         f"{' → '.join(cost.deferred_loaded[BASELINE][module])}")
    return lines


def main() -> None:
    print(f"# keyward bench — {date.today().isoformat()}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")
    print("\n".join(_round_trip_report(measure_operations())), end="\n\n", flush=True)
    print("\n".join(_import_report(measure_import_cost())))


if __name__ == "__main__":
    main()
