"""A bench measurement run in a tree's own process: ``python -m bench.worker PART``, started with
the tree as its working directory, so that ``app`` and ``chalicelib`` are that tree's.

- ``roundtrips``: the round-trip journey; prints its measurements as one JSON list.
- ``capacity N``: a storm of N sign-ins with every write recorded (:mod:`bench.capacity`);
  prints the storm as one JSON object.
- ``first-requests``: sets up a member with a security key, prints ``{}`` once ready, then for
  each line read serves one fresh process's first requests and prints their figures, as JSON,
  until its input ends. A failure is printed as ``{"error": ...}``.
"""

from __future__ import annotations

import json
import sys
import tempfile


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else ""
    if part == "roundtrips":
        from bench.roundtrips import measure_operations

        print(json.dumps([measurement.to_json() for measurement in measure_operations()]))
    elif part == "capacity":
        from bench.capacity import SIGN_INS, measure_capacity

        sign_ins = int(sys.argv[2]) if len(sys.argv) > 2 else SIGN_INS
        print(json.dumps(measure_capacity(sign_ins).to_json()))
    elif part == "first-requests":
        from bench.imports import FirstRequestRunner

        with tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache:
            try:
                runner = FirstRequestRunner(bytecode_cache)
            except Exception as failed:  # reported to the bench, which shows it in place of the figures
                print(json.dumps({"error": f"{type(failed).__name__}: {failed}"}), flush=True)
                return
            print("{}", flush=True)
            for _ in sys.stdin:
                try:
                    print(json.dumps(runner.run()), flush=True)
                except Exception as failed:
                    print(json.dumps({"error": f"{type(failed).__name__}: {failed}"}), flush=True)
                    return
    else:
        sys.exit(f"usage: python -m bench.worker roundtrips|capacity [N]|first-requests (not {part!r})")


if __name__ == "__main__":
    main()
