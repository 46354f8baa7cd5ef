"""Bulk submit: 10,000 recipients accepted (validated, normalised, encoded, stored) in one call.

    python benchmarks/bulk.py

Target: <= 1 s. Measured on the gateway with no modems attached, so only acceptance is timed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import report

from modemgw.gateway import Gateway, GatewaySettings
from modemgw.store import Store


def main() -> None:
    timings = []
    for round_ in range(5):
        store = Store(Path(tempfile.mkdtemp(prefix="modemgw-bulk-")) / "modemgw.db")
        gateway = Gateway(store, GatewaySettings(default_region="GB"))
        numbers = [f"07700 9{n:05d}" for n in range(10_000)]
        started = time.perf_counter()
        result = gateway.submit("Spring sale: 20% off everything until Sunday. Reply STOP to opt out.", numbers)
        timings.append(time.perf_counter() - started)
        assert len(result["messages"]) == 10_000
        store.close()
    report("bulk", [{"recipients": 10_000, "best_s": round(min(timings), 3),
                     "median_s": round(statistics.median(timings), 3)}], ["recipients", "best_s", "median_s"])


if __name__ == "__main__":
    main()
