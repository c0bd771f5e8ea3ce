"""`make mutate`: mutation testing of keyward's security modules with cosmic-ray.

Each module of ``mutation/modules.toml`` is mutated in a copy of the working tree under
``.mutation/<module>/`` (cosmic-ray writes each mutant into the file on disk, so the tree being
edited is never touched), its tests run once per mutant, and cosmic-ray's report is written to
``.mutation/<module>/report.txt``. The session database stays there too: a second run resumes
where the first stopped, so a long module can be done in several sittings.

    python -m mutation.run                  # every module that exists
    python -m mutation.run challenges mfa   # some of them
    python -m mutation.run --recheck mfa    # run its survivors again, against the tests as they are now
    python -m mutation.run --jobs 2 keys    # two mutants at a time, in two copies of the tree
    python -m mutation.run --functions holds_key,ended_by_new_key sessions   # only those functions' mutants
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
MODULES = ROOT / "mutation" / "modules.toml"
# What a copy of the tree leaves out: virtualenvs, caches, earlier runs, the dev stack's state.
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".mutation", ".devstack", ".artifacts", "__pycache__", ".pytest_cache", ".hypothesis", "out"
)


# pytest's plugin autoloading imports hypothesis and schemathesis; the modules' in-process tests
# need neither plugin.
_TEST_ENVIRONMENT = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _config(
    *,
    module_path: str,
    tests: list[str],
    timeout: float,
    exclude: list[str],
    forkserver: Path,
    lines: Path,
    original: Path,
) -> str:
    # Each mutant's tests run in a child of the fork server (mutation/forkserver.py), which has
    # done the start-up once, and only the tests that execute the lines the mutant changed; the
    # server kills a run a little before cosmic-ray would.
    test_command = " ".join(
        [
            sys.executable,
            "-m",
            "mutation.forkserver",
            "run",
            str(forkserver),
            str(timeout * 0.9),
            "--lines",
            str(lines),
            str(original),
            module_path,
            "--",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *tests,
        ]
    )
    return "\n".join(
        [
            "[cosmic-ray]",
            f"module-path = {json.dumps(module_path)}",
            f"timeout = {timeout}",
            "excluded-modules = []",
            f"test-command = {json.dumps(test_command)}",
            "",
            "[cosmic-ray.distributor]",
            'name = "local"',
            "",
            "[cosmic-ray.filters.operators-filter]",
            f"exclude-operators = {json.dumps(exclude)}",
            "",
        ]
    )


def _map_lines(*, tree: Path, module_path: str, tests: list[str], lines: Path, original: Path) -> None:
    """Run the tests on the unmutated module under coverage (which must pass), and record which
    tests execute each of its lines, and the order pytest collects them in."""
    data_file = tree / ".coverage"
    data_file.unlink(missing_ok=True)
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    subprocess.run(
        [
            *pytest,
            "-p",
            "pytest_cov",
            f"--cov={Path(module_path).parent}",
            "--cov-context=test",
            "--cov-report=",
            *tests,
        ],
        cwd=tree,
        check=True,
        env=_TEST_ENVIRONMENT,
    )
    collected = subprocess.run(
        [*pytest, "--collect-only", *tests], cwd=tree, check=True, env=_TEST_ENVIRONMENT, capture_output=True, text=True
    ).stdout
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    by_line = data.contexts_by_lineno(str((tree / module_path).resolve()))
    lines.write_text(
        json.dumps(
            {
                # pytest-cov names a test's context "<node id>|setup", "|run" or "|teardown".
                "lines": {
                    str(line): sorted({context.split("|")[0] for context in contexts})
                    for line, contexts in by_line.items()
                },
                "collected": [line for line in collected.splitlines() if "::" in line],
            }
        )
    )
    original.write_text((tree / module_path).read_text())


@contextlib.contextmanager
def _forkserver(*, tree: Path, socket_path: Path, module_path: str) -> Iterator[None]:
    """mutation/forkserver.py serving the tree's tests while cosmic-ray runs."""
    socket_path.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "mutation.forkserver", "serve", str(socket_path), module_path],
        cwd=tree,
        env=_TEST_ENVIRONMENT,
    )
    try:
        deadline = time.monotonic() + 120
        while not socket_path.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the fork server for {module_path} did not start")
            time.sleep(0.2)
        yield
    finally:
        server.terminate()
        server.wait()


def _forget_survivors(session: Path) -> int:
    """Make the surviving mutants of a session pending again, so that resuming it runs them against
    the tests as they are now (after tests were added to kill them)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(session)) as database, database:
        return database.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'").rowcount


# What a mutant outside the functions asked for is marked with: skipped, not run, and run again
# by a later run that asks for it (or for the whole module).
_OUTSIDE_FUNCTIONS = "outside the functions asked for (--functions)"


def _select_functions(session: Path, functions: list[str] | None) -> int:
    """Leave pending only the mutants inside ``functions`` (cosmic-ray's definition name: a
    function's or method's own name, or empty at module level); None: every mutant. Returns how
    many pending mutants are left out."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(session)) as database, database:
        database.execute(
            "DELETE FROM work_results WHERE worker_outcome = 'SKIPPED' AND output = ?", (_OUTSIDE_FUNCTIONS,)
        )
        if functions is None:
            return 0
        names = ", ".join("?" * len(functions))
        return database.execute(
            "INSERT INTO work_results (worker_outcome, output, job_id)"
            " SELECT 'SKIPPED', ?, job_id FROM mutation_specs"
            f" WHERE coalesce(definition_name, '') NOT IN ({names})"
            " AND job_id NOT IN (SELECT job_id FROM work_results)",
            (_OUTSIDE_FUNCTIONS, *functions),
        ).rowcount


def _exec(*, tree: Path, config: Path, session: Path, forkserver: Path, module_path: str) -> None:
    with _forkserver(tree=tree, socket_path=forkserver, module_path=module_path):
        subprocess.run(
            [_tool("cosmic-ray"), "exec", str(config), str(session)], cwd=tree, check=True, env=_TEST_ENVIRONMENT
        )


_ANOTHER_SHARD = "left to another shard"


def _exec_in_shards(*, work: Path, tree: Path, session: Path, jobs: int, settings: dict) -> None:
    """Run the session's pending mutants in ``jobs`` processes at once.

    cosmic-ray runs one mutant at a time, writing it into its tree, so each shard gets a tree and a
    session of its own, in which the other shards' mutants are marked done; afterwards each shard's
    results go back into the module's session, and what a shard did not finish is pending again.
    """
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    with contextlib.closing(sqlite3.connect(session)) as database:
        pending = [
            row[0]
            for row in database.execute(
                "SELECT job_id FROM work_items WHERE job_id NOT IN (SELECT job_id FROM work_results) ORDER BY job_id"
            )
        ]
    slices = [pending[number::jobs] for number in range(jobs)]
    shards = []
    for number, mine in enumerate(slices):
        shard = work / f"shard-{number}"
        shutil.rmtree(shard, ignore_errors=True)
        shard.mkdir()
        shutil.copytree(tree, shard / "tree", ignore=_NOT_COPIED)
        shutil.copy(session, shard / "session.sqlite")
        own = set(mine)
        others = [job for job in pending if job not in own]
        with contextlib.closing(sqlite3.connect(shard / "session.sqlite")) as database, database:
            database.executemany(
                "INSERT INTO work_results (worker_outcome, output, job_id) VALUES ('SKIPPED', ?, ?)",
                [(_ANOTHER_SHARD, job) for job in others],
            )
        config = shard / "config.toml"
        config.write_text(_config(**{**settings, "forkserver": shard / "forkserver.sock"}))
        shards.append((shard, config, own))
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = [
                pool.submit(
                    _exec,
                    tree=shard / "tree",
                    config=config,
                    session=shard / "session.sqlite",
                    forkserver=shard / "forkserver.sock",
                    module_path=settings["module_path"],
                )
                for shard, config, _ in shards
            ]
            for run in runs:
                run.result()
    finally:
        # Whatever the shards did, interrupted or not, is kept.
        with contextlib.closing(sqlite3.connect(session)) as database, database:
            for shard, _, mine in shards:
                with contextlib.closing(sqlite3.connect(shard / "session.sqlite")) as results:
                    done = [
                        row
                        for row in results.execute(
                            "SELECT worker_outcome, output, test_outcome, diff, job_id FROM work_results"
                        )
                        if row[4] in mine
                    ]
                database.executemany(
                    "INSERT OR REPLACE INTO work_results (worker_outcome, output, test_outcome, diff, job_id)"
                    " VALUES (?, ?, ?, ?, ?)",
                    done,
                )


def mutate(
    name: str,
    *,
    module: dict,
    timeout: float,
    exclude: list[str],
    recheck: bool = False,
    jobs: int = 1,
    functions: list[str] | None = None,
) -> Path | None:
    if not (ROOT / module["path"]).exists():
        print(f"{name}: {module['path']} does not exist yet; skipped")
        return None
    tests = [test for test in module["tests"] if (ROOT / test).exists()]
    if not tests:
        print(f"{name}: none of its tests exist yet; skipped")
        return None
    work = WORK / name
    tree = work / "tree"
    session = work / "session.sqlite"
    config = work / "config.toml"
    forkserver = work / "forkserver.sock"
    lines, original = work / "lines.json", work / "original.py"
    settings = dict(
        module_path=module["path"],
        tests=tests,
        timeout=timeout,
        exclude=exclude,
        forkserver=forkserver,
        lines=lines,
        original=original,
    )
    if not session.exists():
        # A fresh copy for a fresh session.
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(ROOT, tree, ignore=_NOT_COPIED)
        config.write_text(_config(**settings))
        subprocess.run([_tool("cosmic-ray"), "init", str(config), str(session)], cwd=tree, check=True)
        subprocess.run([_tool("cr-filter-operators"), str(session), str(config)], cwd=tree, check=True)
        # The tests must pass on the unmutated module, or every mutant would look killed.
        _map_lines(tree=tree, module_path=module["path"], tests=tests, lines=lines, original=original)
    else:
        # Resuming: the tree as it is now, with the module as the session's mutants were made from
        # (a run that was interrupted may have left a mutant on disk). After changing the module
        # itself the mutants no longer apply: start a fresh session.
        current = (ROOT / module["path"]).read_text()
        if original.exists() and original.read_text() != current:
            raise SystemExit(
                f"{name}: {module['path']} changed since this session began; "
                f"start afresh with rm -r {work.relative_to(ROOT)}"
            )
        if recheck:
            print(f"{name}: {_forget_survivors(session)} surviving mutants to run again")
            lines.unlink(missing_ok=True)  # the tests changed: which of them run each line too
        shutil.copytree(ROOT, tree, ignore=_NOT_COPIED, dirs_exist_ok=True)
        config.write_text(_config(**settings))
        if not lines.exists():
            _map_lines(tree=tree, module_path=module["path"], tests=tests, lines=lines, original=original)
    left_out = _select_functions(session, functions)
    if functions is not None:
        print(f"{name}: only {', '.join(functions)}; {left_out} pending mutants outside them left for a later run")
    if jobs > 1:
        _exec_in_shards(work=work, tree=tree, session=session, jobs=jobs, settings=settings)
    else:
        _exec(tree=tree, config=config, session=session, forkserver=forkserver, module_path=module["path"])
    report = subprocess.run(
        [_tool("cr-report"), "--show-pending", str(session)], cwd=tree, check=True, capture_output=True, text=True
    ).stdout
    (work / "report.txt").write_text(report)
    print(f"{name}: " + (report.strip().splitlines() or ["no report"])[-3:][0])
    print("\n".join(report.strip().splitlines()[-3:]))
    return work / "report.txt"


def main() -> None:
    plan = tomllib.loads(MODULES.read_text())
    parser = argparse.ArgumentParser(description="Mutation testing of keyward's security modules.")
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(plan['modules'])})")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="run the modules' surviving mutants again, against the tests as they are now",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run N mutants at once, each in a copy of the tree (default 1; one per CPU is the most that helps)",
    )
    parser.add_argument(
        "--functions",
        metavar="NAME,...",
        help="run only the mutants inside these functions or methods (by their own name); "
        "the others are skipped, and a later run without this option runs them",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - set(plan["modules"]))
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    for name in args.modules or list(plan["modules"]):
        mutate(
            name,
            module=plan["modules"][name],
            timeout=float(plan["timeout"]),
            exclude=plan["operators"]["exclude"],
            recheck=args.recheck,
            jobs=max(1, args.jobs),
            functions=[name for name in args.functions.split(",") if name] if args.functions else None,
        )


if __name__ == "__main__":
    main()
