"""What goes into the durable deliver_sm queue (`smpp_outbox`): delivery receipts of messages that came over SMPP
(SMPP 3.4 Appendix B's text, with the receipted_message_id and message_state TLVs) and inbound SMS. Pure functions:
a row's payload is the deliver_sm's fields as JSON (the text as hex), built when it is queued, so that a receipt
says the same whenever it goes out.
"""

from __future__ import annotations

from modemgw.smpp import pdu

# A final message status: (stat of the receipt text, message_state TLV, dlvrd)
STATES = {
    "delivered": ("DELIVRD", pdu.DELIVERED, 1),
    "undelivered": ("UNDELIV", pdu.UNDELIVERABLE, 0),
    "failed": ("UNDELIV", pdu.UNDELIVERABLE, 0),
    "expired": ("EXPIRED", pdu.EXPIRED, 0),
    "canceled": ("DELETED", pdu.DELETED, 0),
}
# query_sm's message_state for the statuses that are not final yet
OPEN_STATES = {"scheduled": pdu.ACCEPTED, "queued": pdu.ENROUTE, "sending": pdu.ENROUTE, "sent": pdu.ENROUTE}

# registered_delivery (5.2.17), its low two bits: 0 no receipt, 1 a receipt on success or failure, 2 on failure only
RECEIPT_NONE, RECEIPT_ALWAYS, RECEIPT_FAILURE = 0, 1, 2


def receipt_wanted(registered_delivery: int) -> int:
    """RECEIPT_NONE, RECEIPT_ALWAYS or RECEIPT_FAILURE (3, reserved, counts as always)."""
    bits = registered_delivery & 0x03
    return RECEIPT_ALWAYS if bits == 3 else bits


def message_state(status: str) -> int:
    """query_sm's message_state for a message status."""
    if status in STATES:
        return STATES[status][1]
    return OPEN_STATES.get(status, pdu.UNKNOWN)


# Characters whose GSM 03.38 septet is their ASCII code: a receipt's text reads the same to a client that decodes
# data_coding 0 as GSM and to one that takes it as ASCII (Kannel hands a receipt's text on undecoded).
SAME_IN_ASCII_AND_GSM = frozenset(" !\"#%&'()*+,-./0123456789:;<=>?"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def receipt_safe(value: str) -> str:
    """`value` with every character outside SAME_IN_ASCII_AND_GSM as "?"."""
    return "".join(char if char in SAME_IN_ASCII_AND_GSM else "?" for char in value)


def receipt_text(message_id: str, status: str, submitted_at: float, done_at: float, error: int | None,
                 body: str) -> str:
    """Appendix B: `id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000
    text:<the first 20 characters>`."""
    stat, _, delivered = STATES[status]
    return (f"id:{message_id} sub:001 dlvrd:{delivered:03d} submit date:{pdu.receipt_date(submitted_at)} "
            f"done date:{pdu.receipt_date(done_at)} stat:{stat} err:{(error or 0) % 1000:03d} "
            f"text:{body[:20]}")


def to_payload(deliver: pdu.Deliver) -> dict:
    """A deliver_sm as the JSON an outbox row keeps."""
    return {"source_addr": deliver.source_addr, "source_ton": deliver.source_ton, "source_npi": deliver.source_npi,
            "destination_addr": deliver.destination_addr, "dest_ton": deliver.dest_ton, "dest_npi": deliver.dest_npi,
            "esm_class": deliver.esm_class, "data_coding": deliver.data_coding, "message": deliver.message.hex(),
            "receipted_message_id": deliver.receipted_message_id, "message_state": deliver.message_state,
            "network_error": deliver.network_error}


def from_payload(payload: dict) -> pdu.Deliver:
    """The deliver_sm an outbox row's payload describes."""
    return pdu.Deliver(source_addr=payload["source_addr"], destination_addr=payload["destination_addr"],
                       data_coding=payload["data_coding"], message=bytes.fromhex(payload["message"]),
                       esm_class=payload["esm_class"], source_ton=payload["source_ton"],
                       source_npi=payload["source_npi"], dest_ton=payload["dest_ton"], dest_npi=payload["dest_npi"],
                       receipted_message_id=payload.get("receipted_message_id"),
                       message_state=payload.get("message_state"), network_error=payload.get("network_error"))


def receipts(message: dict, details: dict | None) -> list[dict]:
    """The receipts (outbox payloads) of a final message that came over SMPP: one per message_id the client was
    given (each part of a message it split, `details["ids"]`; the message's own id when the details are lost),
    none when it asked for failures only and the message was delivered."""
    details = details or {}
    status = message["status"]
    wanted = details.get("registered_delivery", RECEIPT_ALWAYS)
    if wanted == RECEIPT_NONE or wanted == RECEIPT_FAILURE and status == "delivered":
        return []
    ids = details.get("ids") or [str(message["id"])]
    source_ton, source_npi, source = pdu.address_out(message["recipient"])
    done = message.get("delivered_at") or message.get("updated_at") or message["created_at"]
    error = message.get("error_code")
    payloads = []
    for receipted in ids:
        text = receipt_text(receipted, status, message["created_at"], done, error, message["body"])
        payloads.append(to_payload(pdu.Deliver(
            source_addr=source, source_ton=source_ton, source_npi=source_npi,
            destination_addr=details.get("source_addr", ""), dest_ton=details.get("source_ton", pdu.TON_UNKNOWN),
            dest_npi=details.get("source_npi", pdu.NPI_UNKNOWN), esm_class=pdu.ESM_RECEIPT, data_coding=0,
            message=receipt_safe(text).encode("ascii"), receipted_message_id=receipted,
            message_state=STATES[status][1], network_error=error if status != "delivered" and error else None)))
    return payloads


def inbound(row: dict) -> dict:
    """The deliver_sm (outbox payload) of an inbound SMS: from its sender, to the SIM's number when the SIM knows
    it; GSM 03.38 when every character has a septet, else UCS-2; a text too long for short_message goes whole in
    message_payload."""
    source_ton, source_npi, source = pdu.address_out(row["sender"])
    dest_ton, dest_npi, dest = pdu.address_out(row["our_number"]) if row.get("our_number") else \
        (pdu.TON_UNKNOWN, pdu.NPI_UNKNOWN, "")
    coding, data = pdu.encode_text(row["body"])
    return to_payload(pdu.Deliver(source_addr=source, source_ton=source_ton, source_npi=source_npi,
                                  destination_addr=dest, dest_ton=dest_ton, dest_npi=dest_npi, data_coding=coding,
                                  message=data))
