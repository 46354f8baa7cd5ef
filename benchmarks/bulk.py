"""Bulk submit: 10,000 recipients accepted (validated, normalised, encoded, stored) in one call.

    python benchmarks/bulk.py [--quick] [--rounds N] [--out DIR]

Target: <= 1 s. Measured on the gateway with no modems attached, so only acceptance is timed.
"""

from __future__ import annotations

import statistics
import time

from common import options, report, temporary_directory

from modemgw.gateway import Gateway, GatewaySettings
from modemgw.store import Store


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="submits timed, each on a fresh database (default 5)")
    args = parser.parse_args()
    timings = []
    for round_ in range(args.rounds or (1 if args.quick else 5)):
        store = Store(temporary_directory("modemgw-bulk-") / "modemgw.db")
        gateway = Gateway(store, GatewaySettings(default_region="GB"))
        numbers = [f"07700 9{n:05d}" for n in range(10_000)]
        started = time.perf_counter()
        result = gateway.submit("Spring sale: 20% off everything until Sunday. Reply STOP to opt out.", numbers)
        timings.append(time.perf_counter() - started)
        assert len(result["messages"]) == 10_000
        store.close()
    report("bulk", [{"recipients": 10_000, "best_s": round(min(timings), 3),
                     "median_s": round(statistics.median(timings), 3), "rounds": len(timings)}],
           ["recipients", "rounds", "best_s", "median_s"], args.out, quick=args.quick)


if __name__ == "__main__":
    main()
