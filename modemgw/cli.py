"""The `modemgw` command line: a thin layer over the library; library errors become click errors."""

from __future__ import annotations

import json
import sys

import click

from modemgw import __version__, pdu, text


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="modemgw")
def main() -> None:
    """modemgw: an SMS gateway for a pool of USB GSM modems."""


def _print_json(value: dict) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _read_argument(value: str) -> str:
    """`-` reads standard input, so that texts with shell metacharacters need no quoting."""
    if value == "-":
        return sys.stdin.read().removesuffix("\n")
    return value


@main.group("pdu")
def pdu_group() -> None:
    """Decode and encode SMS PDUs (3GPP TS 23.040), as modems show them in their logs."""


@pdu_group.command("decode")
@click.argument("hex_pdu", metavar="HEX")
@click.option("--length", "tpdu_length", type=int, default=None,
              help="TPDU length as the modem reported it (+CMGL/+CMT/+CDS); settles whether an SMSC field leads.")
def pdu_decode(hex_pdu: str, tpdu_length: int | None) -> None:
    """Decode an SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT and print it as JSON.

    HEX may start with the SMSC field or not; `-` reads it from standard input.
    """
    try:
        message = pdu.decode(_read_argument(hex_pdu), tpdu_length)
    except pdu.PduError as error:
        raise click.ClickException(f"cannot decode PDU: {error}") from None
    _print_json(pdu.as_dict(message))


@pdu_group.command("encode")
@click.option("--to", "recipient", required=True, help="Recipient: +E.164 for international, digits otherwise.")
@click.option("--text", "message", required=True, help="Message text; `-` reads standard input.")
@click.option("--no-report", is_flag=True, help="Do not request a delivery status report.")
@click.option("--validity", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Relative validity period (rounded up to what the PDU can express).")
@click.option("--encoding", type=click.Choice([text.GSM7, text.UCS2]), default=None,
              help="Force an encoding (default: GSM-7 when the text fits it, else UCS-2).")
@click.option("--smart", is_flag=True, help="Replace typographic look-alikes so that the text fits GSM-7.")
@click.option("--reference", type=click.IntRange(0, 65535), default=0,
              help="Concatenation reference for multi-part messages (above 255 uses a 16-bit header).")
@click.option("--smsc", default=None, help="Service centre number (default: the one stored on the SIM).")
def pdu_encode(recipient: str, message: str, no_report: bool, validity: int | None, encoding: str | None,
               smart: bool, reference: int, smsc: str | None) -> None:
    """Print the SMS-SUBMIT PDUs for a message, one line per part: TPDU length, then the hex for AT+CMGS."""
    message = _read_argument(message)
    if smart:
        message, _ = text.smart_encode(message)
    try:
        parts = pdu.encode_message(recipient, message, encoding, concat_reference=reference,
                                   concat_bits=16 if reference > 255 else 8, request_report=not no_report,
                                   validity=validity, smsc=smsc)
    except pdu.PduError as error:
        raise click.ClickException(str(error)) from None
    for part in parts:
        click.echo(f"{part.tpdu_length} {part.hex}")


@main.command("text-info")
@click.argument("message", metavar="TEXT")
@click.option("--smart", is_flag=True, help="Count after replacing typographic look-alikes with GSM-7.")
def text_info(message: str, smart: bool) -> None:
    """Print a text's encoding, characters and segments as JSON; `-` reads standard input."""
    try:
        result = text.info(_read_argument(message), smart=smart)
    except text.TextError as error:
        raise click.ClickException(str(error)) from None
    _print_json(result.as_dict())


if __name__ == "__main__":  # pragma: no cover
    main()
