"""Every benchmark script runs (in its --quick mode, a few seconds each) and writes the JSON the README quotes.

These check that the scripts work and that their figures are sane, never that targets are met: timing on a
shared CI machine is not a test. Quick runs write to a temporary directory (--out), never over the recorded
results in benchmarks/results/. peers.py needs gammu-smsd and smsd (Debian's gammu-smsd and smstools): without
them its test skips and says why, and under CI a missing program is a failure, as in test_peers.py.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, out: Path, *extra: str, timeout: float = 120) -> dict:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out), *extra],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    name = script.removesuffix(".py")
    data = json.loads((out / f"{name}.json").read_text())
    assert data["quick"] is True and data["machine"]["python"] and data["machine"]["cpus"] >= 1
    assert (BENCHMARKS / "results").resolve() != out.resolve()  # the recorded figures stay as they are
    return data


def test_throughput(tmp_path):
    rows = run("throughput.py", tmp_path)["rows"]
    loaded = [row for row in rows if row["latency_s"] == 0.5]
    assert [row["modems"] for row in loaded] == [1, 2]
    for row in loaded:
        assert 0 < row["utilisation_pct"] <= row["steady_pct"] + 0.2 and row["steady_pct"] <= 105, row
        assert row["messages"] == row["modems"] * 4 and row["seconds"] > 0
    [instant] = [row for row in rows if row["latency_s"] == 0.0]
    assert instant["msg_per_s"] > 0 and instant["overhead_ms"] > 0


def test_latency(tmp_path):
    rows = {row["start"]: row for row in run("latency.py", tmp_path)["rows"]}
    assert set(rows) == {"http", "submit"}
    for row in rows.values():
        assert row["samples"] == 30
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] < 5000, row
    http = rows["http"]
    assert http["after_202_p50_ms"] <= http["after_202_p99_ms"] <= http["after_202_max_ms"] <= http["max_ms"]


def test_bulk(tmp_path):
    [row] = run("bulk.py", tmp_path)["rows"]
    assert row["recipients"] == 10_000 and row["rounds"] == 1
    assert 0 < row["best_s"] <= row["median_s"] < 60


def test_footprint(tmp_path):
    data = run("footprint.py", tmp_path)
    rows = data["rows"]
    assert [(row["setup"], row["process"]) for row in rows] == [
        ("serve --simulate 8", "gateway with simulator inside"), ("serve + sim process", "gateway alone"),
        ("serve + sim process", "simulator (modemgw sim)")]
    for row in rows:
        assert row["messages"] == 10_000 and row["modems"] == 8
        assert 5 < row["rss_mb"] <= row["peak_rss_mb"] < 2000 and 0 < row["pss_mb"] <= row["rss_mb"], row
        assert 0 <= row["idle_cpu_pct"] < 100 and row["idle_s"] > 0 and row["threads"] >= 1, row
    assert rows[1]["threads"] > rows[2]["threads"], "the gateway runs a worker thread per modem"


def require(program: str, package: str) -> None:
    if shutil.which(program) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing: .ci/run must install Debian's {package}")
        pytest.skip(f"{program} is not installed (apt-get install {package}); CI installs it")


def test_peers(tmp_path):
    require("gammu-smsd", "gammu-smsd")
    require("smsd", "smstools")
    data = run("peers.py", tmp_path)
    assert data["skipped"] == [] and data["send_latency_s"] == 0.5
    rows = {(row["gateway"], row["config"]): row for row in data["rows"]}
    assert set(rows) == {("modemgw", "default"), ("smsd", "tuned")}
    for row in rows.values():
        assert "error" not in row, row
        assert row["modems"] == 1 and row["messages"] == 3
        assert 0 < row["utilisation_pct"] <= 105, row
        assert row["idle_samples"] == 2 and 0 < row["idle_min_ms"] <= row["idle_p50_ms"] <= row["idle_max_ms"], row
    measures = {line["measure"]: line for line in data["comparison"]}
    assert set(measures) == {"utilisation % (1 modem)", "idle latency p50 ms", "idle latency max ms"}
    line = measures["utilisation % (1 modem)"]
    assert line["modemgw"] == rows["modemgw", "default"]["utilisation_pct"]
    assert line["ratio vs smsd tuned"] == round(line["modemgw"] / line["smsd tuned"], 4)


def test_smpp(tmp_path):
    data = run("smpp.py", tmp_path)
    rows = data["rows"]
    assert [(row["interface"], row["concurrency"]) for row in rows] == [("smpp", 1), ("smpp", 10), ("http", 1),
                                                                         ("http", 10)]
    for row in rows:
        assert row["messages"] == 100 and row["modems"] == 2
        assert row["accepted_per_s"] > 0 and row["sent_per_s"] > 0, row
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] < 10_000, row
