import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from modemgw import pdu
from modemgw.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


def test_help_lists_the_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("pdu", "text-info", "sim", "console"):
        assert f"  {command} " in result.output


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "modemgw"
    completed = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "text-info" in completed.stdout


def test_pdu_decode_prints_json(run):
    result = run("pdu", "decode", "0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
    assert result.exit_code == 0
    decoded = json.loads(result.output)
    assert decoded["type"] == "submit"
    assert decoded["number"] == "+46708251358"
    assert decoded["text"] == "hellohello"


def test_pdu_decode_status_report(run):
    decoded = json.loads(run("pdu", "decode", "0006D60B911326880736F4111011719551401110117195714000").output)
    assert (decoded["type"], decoded["reference"], decoded["status"]) == ("status-report", 214, "delivered")
    assert decoded["discharge_time"] == "2011-01-11T17:59:17+01:00"


def test_pdu_decode_reads_stdin(run):
    result = run("pdu", "decode", "-", input="0011000B916407281553F80000AA0AE8329BFD4697D9EC37\n")
    assert json.loads(result.output)["text"] == "hellohello"


def test_pdu_decode_error_is_precise(run):
    result = run("pdu", "decode", "0011000B916407281553F80000AA0AE8329BFD4697D9")
    assert result.exit_code == 1
    assert "cannot decode PDU: PDU ends inside user data" in result.output
    assert "(at octet 15)" in result.output


def test_pdu_encode_one_line_per_part(run):
    result = run("pdu", "encode", "--to", "+46708251358", "--text", "é" * 200, "--validity", "3600")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2
    texts = []
    for line in lines:
        length, hex_pdu = line.split()
        decoded = pdu.decode(hex_pdu, tpdu_length=int(length))
        assert decoded.request_report and decoded.validity == 3600
        texts.append(decoded.text)
    assert "".join(texts) == "é" * 200


def test_pdu_encode_no_report_and_the_published_pdu(run):
    result = run("pdu", "encode", "--to", "+46708251358", "--text", "hellohello", "--no-report",
                 "--validity", str(4 * 86400))
    assert result.output == "23 0011000B916407281553F80000AA0AE8329BFD4697D9EC37\n"


def test_pdu_encode_refuses_a_bad_number(run):
    result = run("pdu", "encode", "--to", "+46x", "--text", "hi")
    assert result.exit_code == 1
    assert "not a dialling digit" in result.output


def test_text_info_acceptance(run):
    body = ("Meeting moved to room 4, costs 10€ each. " * 10)[:400]
    assert "€" in body and len(body) == 400
    info = json.loads(run("text-info", body).output)
    assert (info["encoding"], info["segments"], info["characters"]) == ("gsm7", 3, 400)
    info = json.loads(run("text-info", "Hi 😀").output)
    assert (info["encoding"], info["segments"], info["unicode_characters"]) == ("ucs2", 1, ["😀"])


def test_text_info_smart(run):
    info = json.loads(run("text-info", "--smart", "It’s done…", ).output)
    assert info["encoding"] == "gsm7"
    assert info["replacements"] == {"’": "'", "…": "..."}
