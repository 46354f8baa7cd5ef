"""The simulated mobile network: joins simulated SIMs, carries messages between them, answers USSD, and sends
status reports after a delay with an outcome chosen by the recipient's prefix."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from modemgw import pdu, text
from modemgw.pdu import Concat
from modemgw.sim.interpreter import SimModem

DELIVERED = 0x00


@dataclass
class NetworkSettings:
    report_delay: float = 0.05        # seconds from a send to its status report
    delivery_delay: float = 0.0       # seconds from a send to its arrival at another simulated SIM
    retry_delay: float = 1.0          # seconds before a message a modem could not take is offered again
    # recipient prefix -> the TP-ST codes of the reports it produces, in order (e.g. [0x21, 0x00]: pending,
    # then delivered). The longest matching prefix wins; no match means delivered.
    outcomes: dict[str, list[int]] = field(default_factory=dict)
    ussd: dict[str, str] = field(default_factory=lambda: {
        "*100#": "Your balance is 12.50 EUR. Valid until 31/12/2026.",
        "*101#": "Остаток: 100 ₽",
    })


class Network:
    """Routes between `SimModem`s. All calls happen on the simulator's loop thread."""

    def __init__(self, call_at: Callable[[float, Callable[[], None]], None], now: Callable[[], float],
                 settings: NetworkSettings | None = None):
        self.call_at = call_at
        self.now = now
        self.settings = settings or NetworkSettings()
        self.modems: list[SimModem] = []
        self._pending: dict[str, list[tuple[str, pdu.EncodedPdu, int | None]]] = defaultdict(list)
        self._next_reference = 1
        self._retry_pending: set[str] = set()  # modems with a retry timer set: one timer each

    def attach(self, modem: SimModem) -> None:
        self.modems.append(modem)

    def by_number(self, number: str) -> SimModem | None:
        wanted = number.lstrip("+")
        for modem in self.modems:
            if modem.identity.number.lstrip("+") == wanted:
                return modem
        return None

    def outcome(self, recipient: str) -> list[int]:
        matches = [prefix for prefix in self.settings.outcomes if recipient.startswith(prefix)]
        if not matches:
            return [DELIVERED]
        return list(self.settings.outcomes[max(matches, key=len)])

    # --- from modems ---------------------------------------------------------------------------------

    def submit(self, modem: SimModem, message: pdu.Submit, reference: int) -> None:
        """A modem sent `message` and answered `+CMGS: reference`."""
        recipient = message.recipient.number
        if message.request_report:
            sent_at = self._timestamp()
            for step, code in enumerate(self.outcome(recipient), start=1):
                self.call_at(self.now() + self.settings.report_delay * step,
                             functools.partial(self._report, modem, reference, recipient, code, sent_at))
        target = self.by_number(recipient)
        if target is not None:
            user_data = message.user_data
            payload = user_data.text if user_data.text is not None else user_data.payload
            encoded = pdu.encode_deliver(modem.identity.number, payload, user_data.encoding,
                                         timestamp=self._timestamp(), concat=user_data.concat,
                                         ports=user_data.ports, message_class=message.coding.message_class,
                                         smsc=target.identity.smsc)
            self.call_at(self.now() + self.settings.delivery_delay,
                         lambda: self.offer(target, "sms", encoded, message.coding.message_class))

    def ussd(self, modem: SimModem, request: str) -> tuple[int, str]:
        if request == "*#100#":
            return 0, modem.identity.number
        reply = self.settings.ussd.get(request)
        return (0, reply) if reply is not None else (4, "")

    def redeliver_later(self, modem: SimModem, kind: str, encoded: pdu.EncodedPdu) -> None:
        what = "sms" if kind == "+CMT" else "report"
        self.call_at(self.now() + self.settings.retry_delay, lambda: self.offer(modem, what, encoded, None))

    def memory_available(self, modem: SimModem) -> None:
        self._retry_pending.discard(modem.name)
        waiting = self._pending.pop(modem.name, [])
        for kind, encoded, message_class in waiting:
            self.offer(modem, kind, encoded, message_class)

    # --- to modems -----------------------------------------------------------------------------------

    def inject(self, modem: SimModem, sender: str, body: str, *, encoding: str | None = None,
               parts: int | None = None, order: list[int] | None = None, reference: int | None = None,
               concat_bits: int = 8, message_class: int | None = None) -> list[pdu.EncodedPdu]:
        """Deliver an inbound message from `sender`, split like a phone would (or into `parts` pieces), the
        parts offered in `order` (1-based sequence numbers; default in sequence)."""
        encoding = encoding or text.choose_encoding(body)
        pieces = text.split(body, encoding, concat_bits)
        if parts is not None and parts > len(pieces):
            size = -(-len(body) // parts)
            pieces = [body[i:i + size] for i in range(0, len(body), size)]
        if reference is None:
            reference = self._next_reference % (256 if concat_bits == 8 else 65536)
            self._next_reference += 1
        total = len(pieces)
        encoded = [
            pdu.encode_deliver(sender, piece, encoding, timestamp=self._timestamp(),
                               concat=Concat(reference, total, index, concat_bits) if total > 1 else None,
                               message_class=message_class, smsc=modem.identity.smsc)
            for index, piece in enumerate(pieces, start=1)
        ]
        for sequence in order or range(1, total + 1):
            self.offer(modem, "sms", encoded[sequence - 1], message_class)
        return encoded

    def _report(self, modem: SimModem, reference: int, recipient: str, code: int, sent_at: dt.datetime) -> None:
        encoded = pdu.encode_status_report(reference, recipient, code, sc_timestamp=sent_at,
                                           discharge_time=self._timestamp(), smsc=modem.identity.smsc)
        self.offer(modem, "report", encoded, None)

    def offer(self, modem: SimModem, kind: str, encoded: pdu.EncodedPdu, message_class: int | None = None) -> None:
        """Hand `encoded` (kind "sms" or "report") to `modem`; kept and offered again while it cannot take it."""
        taken = modem.plugged and (modem.deliver_sms(encoded, message_class) if kind == "sms"
                                   else modem.deliver_report(encoded))
        if not taken:
            self._pending[modem.name].append((kind, encoded, message_class))
            if modem.name not in self._retry_pending:
                self._retry_pending.add(modem.name)
                self.call_at(self.now() + self.settings.retry_delay, lambda: self.memory_available(modem))

    @staticmethod
    def _timestamp() -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
