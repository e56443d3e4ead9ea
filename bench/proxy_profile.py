"""A profiler the system benchmark switches on and off inside a running proxy.

Added to the proxy's worker startup hooks by bench/system_bench.py only
(`LITELLM_WORKER_STARTUP_HOOKS=bench.proxy_profile:install,gateway.plugin:install`);
it costs nothing until asked: SIGUSR1 starts cProfile in the worker's main
thread (the one running the event loop, where the plugin's code runs), SIGUSR2
stops it and writes the statistics to $PORTAL_GATEWAY_BENCH_PROFILE_DIR/proxy-<pid>.prof.
The hook writes $PORTAL_GATEWAY_BENCH_PROFILE_DIR/pid-<pid> so that the benchmark signals
the worker that has the handlers, never another process."""

from __future__ import annotations

import cProfile
import os
import signal
from pathlib import Path
from typing import Any

_profiler: cProfile.Profile | None = None


def _start(signum: int, frame: Any) -> None:
    global _profiler
    _profiler = cProfile.Profile()
    _profiler.enable()


def _stop(signum: int, frame: Any) -> None:
    global _profiler
    if _profiler is None:
        return
    _profiler.disable()
    directory = Path(os.environ["PORTAL_GATEWAY_BENCH_PROFILE_DIR"])
    _profiler.dump_stats(str(directory / f"proxy-{os.getpid()}.prof.tmp"))
    os.replace(directory / f"proxy-{os.getpid()}.prof.tmp", directory / f"proxy-{os.getpid()}.prof")
    _profiler = None


def install() -> None:
    directory = os.environ.get("PORTAL_GATEWAY_BENCH_PROFILE_DIR")
    if not directory:
        return
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    (Path(directory) / f"pid-{os.getpid()}").write_text(str(os.getpid()))
