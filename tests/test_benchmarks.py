"""Every benchmark script runs (in its --quick mode, a few seconds each) and writes the JSON the README quotes.

These check that the scripts work and that their figures are sane, never that targets are met: timing on a
shared CI machine is not a test. Quick runs write to a temporary directory (--out), never over the recorded
results in benchmarks/results/. peers.py needs gammu-smsd and smsd (Debian's gammu-smsd and smstools): without
them its test skips and says why, and under CI a missing program is a failure, as in test_peers.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require  # skipped without the program, a failure under CI

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
    rows, drain, stored = data["rows"][:3], data["rows"][3:5], data["rows"][5:]
    assert [(row["setup"], row["process"]) for row in rows] == [
        ("serve --simulate 8", "gateway with simulator inside"), ("serve + sim process", "gateway alone"),
        ("serve + sim process", "simulator (modemgw sim)")]
    for row in rows:
        assert row["messages"] == 10_000 and row["modems"] == 8
        assert 5 < row["rss_mb"] <= row["peak_rss_mb"] < 2000 and 0 < row["pss_mb"] <= row["rss_mb"], row
        assert 0 <= row["idle_cpu_pct"] < 100 and row["idle_s"] > 0 and row["threads"] >= 1, row
    assert rows[1]["threads"] > rows[2]["threads"], "the gateway runs a worker thread per modem"
    # --drain: RSS sampled while 500 messages were submitted and drained (gateway and simulator apart)
    assert [(row["setup"], row["process"]) for row in drain] == [
        ("drain 500 (instant modems, reports)", "gateway alone"),
        ("drain 500 (instant modems, reports)", "simulator (modemgw sim)")]
    gateway = drain[0]
    assert gateway["samples"] > 1 and gateway["msg_per_s"] > 0, gateway
    assert 5 < gateway["idle_rss_mb"] <= gateway["peak_rss_mb"] < 2000, gateway
    assert 5 < gateway["steady_rss_mb"] <= gateway["peak_rss_mb"] and gateway["rss_mb"] <= gateway["peak_rss_mb"]
    # --stored: RSS idle and after each read path of the API and the web UI, over 5,000 stored messages
    setups = [row["setup"] for row in stored]
    assert setups[:2] == ["stored 5000: idle", "stored 5000: ui login"] and len(setups) == 15, setups
    for row in stored:
        assert row["messages"] == 5_000 and 5 < row["rss_mb"] <= row["peak_rss_mb"] < 2000, row
    assert all(row["ms"] > 0 for row in stored[1:]), stored


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


def test_cost(tmp_path):
    """cost.py mounts an ext4 image per gateway on a loop device: it needs root and loop devices (skipped with the
    reason without them, a failure under CI like a missing program)."""
    require("gammu-smsd", "gammu-smsd")
    require("smsd", "smstools")
    missing = ("not root (cost.py mounts loop devices)" if os.geteuid() != 0 else
               "no loop devices (/dev/loop-control)" if not Path("/dev/loop-control").exists() else None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"cost.py cannot run under CI: {missing}")
        pytest.skip(f"cost.py cannot run here: {missing}")
    data = run("cost.py", tmp_path, "--idle", "2", timeout=400)
    assert data["skipped"] == [] and data["modems"] == 4 and data["block_size"] == 4096
    rows = {row["gateway"]: row for row in data["rows"]}
    floors = {syncs: rows.pop(f"durable floor, {syncs} sync{'s' if syncs > 1 else ''}") for syncs in (1, 3)}
    assert set(rows) == {"modemgw", "modemgw campaign", "gammu-smsd", "smsd"}
    for syncs, row in floors.items():  # each fdatasync wrote at least the 4 KiB block holding its record
        assert row["messages"] == 10 and row["storage_bytes"] == 200 * syncs, row
        assert 4 * syncs <= row["device_kib"] < 4 * syncs + 4, row
    for row in rows.values():
        assert "error" not in row, row
        assert row["messages"] == 40, row
        # something reached the disk for each message, and no more than a sane amount (1 MiB)
        assert 0 < row["device_kib"] < 1024 and 0 <= row["process_kib"] < 1024, row
        assert row["device_bytes_total"] == pytest.approx(row["device_kib"] * 1024 * 40, rel=0.01), row
        # CPU is counted in clock ticks (10 ms): gammu-smsd's 40 sends (~1 ms each) can round down to none
        assert 0 <= row["cpu_ms"] < 1000 and 0 < row["storage_bytes"] < 100_000, row
    for name in ("modemgw", "modemgw campaign"):
        row = rows[name]
        assert row["cpu_ms"] > 0, row  # a few ms per message: many ticks over 40
        # every message is at least one commit of at least one frame; the WAL was read, and mapped to tables
        assert 1 <= row["commits"] <= row["wal_frames"] < 1000, row
        assert row["page_size"] in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536), row
        assert row["wal_kib"] == pytest.approx(row["wal_frames"] * (24 + row["page_size"]) / 1024, rel=0.02), row
        assert "messages" in row["frames_by_table"], row
    assert rows["modemgw campaign"]["commits"] < rows["modemgw"]["commits"], "one POST for all is fewer commits"
    ratios = {line["ratio"]: line for line in data["ratios"]}
    assert set(ratios) == {f"{ours} / {peer}" for ours in ("modemgw", "modemgw campaign")
                           for peer in ("gammu-smsd", "smsd")}
    line = ratios["modemgw / smsd"]
    assert line["device_kib"] == round(rows["modemgw"]["device_kib"] / rows["smsd"]["device_kib"], 2)
    idle = data["idle"]
    assert idle["modems"] == 4 and idle["idle_s"] == 2 and idle["device_bytes"] >= 0 and idle["commits"] >= 0


def test_million(tmp_path):
    data = run("million.py", tmp_path, timeout=300)
    rows = data["rows"]
    assert data["messages"] == 20_000 and data["seeded"]["messages"] == 20_000 and data["seeded"]["parts"] > 0
    names = [row["query"] for row in rows]
    assert len(names) == len(set(names)) >= 50
    assert {"API messages, until=180 days ago", "API stats, by day, 1 year", "UI dashboard", "UI inbox (conversations)",
            "UI messages CSV export, first chunk", "API webhook deliveries", "UI contacts, search"} <= set(names)
    for row in rows:
        assert row["runs"] <= 5 and 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] < 60_000, row
        assert row["ok"] == ("yes" if row["p99_ms"] <= data["target_p99_ms"] else "NO"), row
    assert 5 < data["serve"]["rss_mb"] <= data["serve"]["peak_rss_mb"] < 2000
