"""How real modem families differ, as data. The interpreter consults the profile; it has no vendor branches."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    manufacturer: str
    model: str
    revision: str
    unknown_command: str = "ERROR"          # Huawei says COMMAND NOT SUPPORT
    info_indent: str = ""                   # Wavecom puts a space before information lines
    cpin_final_ok: bool = True              # Wavecom answers AT+CPIN? with no final OK
    busy_after_cfun: int = 0                # Wavecom: +CME ERROR: 515 for this many commands after AT+CFUN=1
    boot_urcs: tuple[str, ...] = ()         # lines a modem prints when it powers up
    urc_in_replies: str | None = None       # a URC that lands between the lines of every multi-line reply
    iccid_commands: tuple[str, ...] = ("+CCID", "+ICCID")
    cnmi_supported: bool = True
    report_routes: tuple[int, ...] = (0, 1, 2)  # CNMI <ds> values accepted (SIM800: no stored reports)
    default_cnmi: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    ussd_packed: bool = False               # Huawei: USSD strings as packed GSM-7 in hex, both ways
    storages: tuple[str, ...] = ("SM", "ME", "SR")
    extra_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)  # command -> fixed reply lines


PROFILES: dict[str, Profile] = {
    "generic": Profile(
        name="generic", manufacturer="SIMULATED", model="SIM-1", revision="1.0",
    ),
    "huawei": Profile(
        name="huawei", manufacturer="huawei", model="E3372", revision="22.200.15.00.00",
        unknown_command="COMMAND NOT SUPPORT", urc_in_replies="^RSSI: 18", ussd_packed=True,
        iccid_commands=("^ICCID", "+CCID"),
        boot_urcs=("^RSSI: 18", "^MODE: 5,4"),
        extra_commands={"^SYSINFO": ("^SYSINFO: 2,3,0,5,1,,4",), "^HWVER": ("^HWVER:\"CL2E3372HM\"",)},
    ),
    "simcom": Profile(
        name="simcom", manufacturer="SIMCOM_Ltd", model="SIMCOM_SIM800L", revision="Revision:1418B04SIM800L24",
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
        default_cnmi=(2, 1, 0, 1, 0), report_routes=(0, 1),
    ),
    "quectel": Profile(
        name="quectel", manufacturer="Quectel", model="EC25", revision="EC25EFAR06A06M4G",
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"),
        iccid_commands=("+QCCID", "+CCID"), storages=("SM", "ME", "SR", "MT"),
    ),
    "wavecom": Profile(
        name="wavecom", manufacturer="WAVECOM MODEM", model="MULTIBAND  900E  1800", revision="R7.46.0.201105",
        info_indent=" ", cpin_final_ok=False, busy_after_cfun=2, iccid_commands=("+CCID",),
    ),
}
