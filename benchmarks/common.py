"""Shared by the benchmark scripts: a daemon on simulated modems in a temporary directory, and output."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from modemgw import config as configuration
from modemgw.daemon import Daemon


def start_daemon(modems: int, send_latency: float, report_delay: float = 3600.0, http: bool = False) -> Daemon:
    """A daemon with `modems` simulated modems; status reports far away so they do not disturb the measure."""
    data = Path(tempfile.mkdtemp(prefix="modemgw-bench-"))
    config = configuration.load(None, data)
    config.listen = "127.0.0.1:0"
    daemon = Daemon(config, simulate=modems, sim_send_latency=send_latency, sim_report_delay=report_delay,
                    http=http).start()
    if not daemon.pool.wait_ready(30):
        raise SystemExit(f"modems did not come up: {daemon.pool.status()}")
    return daemon


def machine() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "system": platform.platform(terse=True), "date": time.strftime("%Y-%m-%d")}


def report(name: str, rows: list[dict], columns: list[str]) -> None:
    """Print a table and write benchmarks/results/<name>.json."""
    widths = [max(len(column), *(len(str(row[column])) for row in rows)) for column in columns]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row[column]).ljust(width) for column, width in zip(columns, widths)))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(f"(written to {out / f'{name}.json'})")
