"""Shared by the benchmark scripts: options, a daemon on simulated modems in a temporary directory, and output.

Every script takes `--quick` (a few seconds, for the smoke tests and for trying a change) and `--out DIR`
(where results/<name>.json goes; default benchmarks/results, which holds the recorded figures, so quick runs
are pointed elsewhere).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def options(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a short run (seconds) that checks the script works; its figures are not the record")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for <name>.json (default benchmarks/results, or $MODEMGW_BENCH_OUT)")
    return parser


def temporary_directory(prefix: str) -> Path:
    """A fresh directory, removed when the script exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def start_daemon(modems: int, send_latency: float, report_delay: float = 3600.0, http: bool = False):
    """A daemon with `modems` simulated modems; status reports far away so they do not disturb the measure."""
    from modemgw import config as configuration
    from modemgw.daemon import Daemon

    data = temporary_directory("modemgw-bench-")
    config = configuration.load(None, data)
    config.listen = "127.0.0.1:0"
    daemon = Daemon(config, simulate=modems, sim_send_latency=send_latency, sim_report_delay=report_delay,
                    http=http).start()
    if not daemon.pool.wait_ready(30):
        daemon.stop()
        raise SystemExit(f"modems did not come up: {daemon.pool.status()}")
    return daemon


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "system": platform.platform(terse=True), "date": time.strftime("%Y-%m-%d")}


def percentiles(values_ms: list[float]) -> dict:
    """p50, p99 and max of a list of milliseconds, rounded for a table (p99: the nearest-rank value)."""
    ordered = sorted(values_ms)
    rank = max(1, -(-len(ordered) * 99 // 100))  # ceil(0.99 n)
    return {"p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(ordered[rank - 1], 2),
            "max_ms": round(ordered[-1], 2)}


def report(name: str, rows: list[dict], columns: list[str], out: Path | None = None, **extra) -> Path:
    """Print a table and write <out>/<name>.json (out: --out, else $MODEMGW_BENCH_OUT, else benchmarks/results)."""
    widths = [max(len(column), *(len(str(row.get(column, "-"))) for row in rows)) for column in columns]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=False)))
    for row in rows:
        print("  ".join(str(row.get(column, "-")).ljust(width) for column, width in zip(columns, widths, strict=False)))
    directory = Path(out or os.environ.get("MODEMGW_BENCH_OUT") or RESULTS)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **extra, "rows": rows}, indent=2) + "\n")
    print(f"(written to {path})")
    return path


# --- processes a script starts: each in its own session, stopped with it (Ctrl-C, SIGTERM, an error) ----------

_processes: list[subprocess.Popen] = []


def track(process: subprocess.Popen) -> subprocess.Popen:
    """Stop `process` (and its session) when the script ends, whatever ends it."""
    _processes.append(process)
    return process


def terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process in _processes:
        _processes.remove(process)


atexit.register(lambda: [terminate(process) for process in reversed(list(_processes))])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
