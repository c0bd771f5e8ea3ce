"""cProfile across threads: keyward's (the calling thread and its deletion threads) and moto's.

cProfile profiles only the thread that enables it. Threads started during the run (keyward's
``ThreadPoolExecutor`` workers, and werkzeug's thread per connection to moto) each get a
profiler of their own through ``threading.setprofile``. The report has two parts: the client
(the calling thread and keyward's workers) and moto's server threads, each by self time
(``tottime``). Waiting shows as self time too: a client's ``recv_into`` waits for moto, and
moto's ``_OneRequestAtATime.__call__`` waits for the request before it. Profiling slows the run
several times over, unevenly: read the entries for where time goes, not the total.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import threading
import time
from collections.abc import Callable
from typing import Any


def profiled(run: Callable[[], None], *, top: int = 20) -> tuple[float, str]:
    """Run ``run`` under cProfile in every thread; its wall time, and the top entries by self time."""
    profilers: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def start_in_thread(*_: Any) -> None:
        profiler = cProfile.Profile()
        with lock:
            profilers.append((threading.current_thread().name, profiler))
        profiler.enable()  # replaces this hook in the new thread

    main = cProfile.Profile()
    threading.setprofile(start_in_thread)
    started = time.perf_counter()
    main.enable()
    try:
        run()
    finally:
        main.disable()
        seconds = time.perf_counter() - started
        threading.setprofile(None)  # type: ignore[arg-type]
    client, server = [main], []
    with lock:
        for name, profiler in profilers:
            (client if name.startswith("ThreadPoolExecutor") else server).append(profiler)
    out = io.StringIO()
    for title, group in (
        ("client: the calling thread and keyward's deletion threads", client),
        ("moto's server threads", server),
    ):
        out.write(f"\n### {title} ({len(group)} threads)\n")
        if not group:
            continue
        stats = pstats.Stats(group[0], stream=out)
        for profiler in group[1:]:
            stats.add(profiler)  # create_stats() snapshots what the thread recorded
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return seconds, out.getvalue()
