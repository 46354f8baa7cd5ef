"""The SMPP 3.4 server (modemgw/smpp/): a real daemon over simulated modems, smpplib as the client over real TCP on
127.0.0.1, and raw PDUs where a well-behaved client cannot send what a test needs."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import smpplib.client
import smpplib.consts
import smpplib.gsm
import smpplib.smpp

from modemgw.daemon import Daemon
from modemgw.smpp import accounts, pdu
from tests.support import daemon_config, eventually

PASSWORD = "secret1"


@pytest.fixture
def smpp_daemon(tmp_path):
    """`start(**smpp)`: a daemon over simulated modems with the SMPP server on 127.0.0.1 (a free port); `[smpp]`
    options as keywords. Every daemon is stopped at the end of the test."""
    running = []

    def start(modems=2, data="data", report_delay=0.05, http=False, **smpp):
        config = daemon_config(tmp_path / data)
        config.smpp.listen = "127.0.0.1:0"
        for key, value in smpp.items():
            setattr(config.smpp, key, value)
        daemon = Daemon(config, simulate=modems, sim_send_latency=0.02, sim_report_delay=report_delay,
                        http=http).start()
        running.append(daemon)
        if modems:
            assert daemon.pool.wait_ready(10), daemon.pool.status()
        return daemon

    yield start
    for daemon in reversed(running):
        daemon.stop()


@pytest.fixture
def clients():
    """`connect(daemon)`: smpplib clients of a daemon's SMPP server, disconnected at the end of the test."""
    made = []

    def connect(daemon, timeout=5):
        client = smpplib.client.Client("127.0.0.1", daemon.smpp.port, timeout=timeout,
                                       allow_unknown_opt_params=True)
        client.connect()
        made.append(client)
        return client

    yield connect
    for client in made:
        if client._socket is not None:
            client.disconnect()


def add_user(daemon, system_id="app", **options):
    return accounts.add_account(daemon.store, system_id, PASSWORD, **options)


class Responses:
    """What a client read: submit_sm_resp PDUs and deliver_sm PDUs, by handler."""

    def __init__(self, client):
        self.sent: list = []
        self.received: list = []
        client.set_message_sent_handler(lambda pdu, **_: self.sent.append(pdu))
        client.set_message_received_handler(lambda pdu, **_: self.received.append(pdu))
        client.set_error_pdu_handler(lambda pdu: self.sent.append(pdu))


def read_until(client, predicate, timeout=10.0):
    """Read PDUs (acting on them: deliver_sm gets its resp) until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the server did not answer in time"
        client.read_once(auto_send_enquire_link=False)
    return True


def submit(client, to, text_bytes, **options):
    options.setdefault("source_addr_ton", smpplib.consts.SMPP_TON_ALNUM)
    options.setdefault("source_addr", "APP")
    options.setdefault("dest_addr_ton", smpplib.consts.SMPP_TON_INTL)
    options.setdefault("dest_addr_npi", smpplib.consts.SMPP_NPI_ISDN)
    return client.send_message(destination_addr=to, short_message=text_bytes, **options)


def test_bind_and_submit_reaches_the_modem(smpp_daemon, clients):
    daemon = smpp_daemon()
    add_user(daemon)
    client = clients(daemon)
    responses = Responses(client)
    client.bind_transmitter(system_id="app", password=PASSWORD)
    submit(client, "447700900123", b"Hello over SMPP", registered_delivery=1)
    read_until(client, lambda: responses.sent)
    answer = responses.sent[0]
    assert answer.status == 0
    message_id = int(answer.message_id)
    message = daemon.wait_for_final(message_id, 10, until="report")
    assert message["status"] == "delivered"
    assert message["body"] == "Hello over SMPP"
    assert message["recipient"] == "+447700900123"
    assert message["smpp_user_id"] is not None
    sent = [part for index in range(2) for part in daemon.simulator.sent(index)]
    assert any(record.text == "Hello over SMPP" for record in sent), sent


# --- helpers for raw PDUs -----------------------------------------------------------------------------------------


class Raw:
    """A client that writes PDUs byte by byte as a test wants them (smpplib would refuse to send them)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pdu(self, command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> None:
        self.send(struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body)

    def read(self) -> tuple[int, int, int, bytes]:
        """(command_id, command_status, sequence, body) of the next PDU; raises EOFError when the server closed."""
        header = self._exact(16)
        length, command_id, status, sequence = struct.unpack(">IIII", header)
        return command_id, status, sequence, self._exact(length - 16)

    def closed(self) -> bool:
        """The server closed the connection (reads return nothing)."""
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return False

    def _exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError("the server closed the connection")
            data += chunk
        return data

    def bind(self, system_id="app", password=PASSWORD, command_id=0x09, system_type="") -> int:
        body = (system_id.encode() + b"\0" + password.encode() + b"\0" + system_type.encode() + b"\0"
                + bytes([0x34, 0, 0]) + b"\0")
        self.pdu(command_id, 1, body)
        answer = self.read()
        assert answer[0] == command_id | 0x80000000
        return answer[1]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw():
    made = []

    def connect(daemon):
        client = Raw(daemon.smpp.port)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def submit_body(to="447700900123", text=b"hi", **options) -> bytes:
    """A submit_sm body as smpplib writes it (an independent encoder)."""
    command = smpplib.smpp.make_pdu("submit_sm", sequence=1, source_addr="APP", source_addr_ton=5,
                                    dest_addr_ton=1, dest_addr_npi=1, destination_addr=to, short_message=text,
                                    **options)
    return command.generate()[16:]


def sent_text(daemon, number: str) -> str:
    """What the simulated SIMs sent to `number`, parts joined in order."""
    return "".join(record.text or "" for index in range(len(daemon.simulator.devices))
                   for record in daemon.simulator.sent(index) if record.recipient == number)


def pending(daemon) -> dict:
    return daemon.store.smpp_pending_counts()


# --- acceptance ---------------------------------------------------------------------------------------------------


def test_a_long_ucs2_message_split_with_udh_arrives_whole_with_a_receipt_per_part(smpp_daemon, clients):
    daemon = smpp_daemon()
    add_user(daemon)
    client = clients(daemon)
    responses = Responses(client)
    client.bind_transceiver(system_id="app", password=PASSWORD)
    # 300 characters that need UCS-2; an emoji straddles the first split (67 UTF-16 units a part)
    text = "Привет, " + "Ж" * 58 + "😀" + "мир " * 58
    text = (text + "ы" * 300)[:300]
    parts, encoding, esm_class = smpplib.gsm.make_parts(text, smpplib.consts.SMPP_ENCODING_ISO10646)
    assert len(parts) == 5 and esm_class == 0x40
    for part in parts:
        submit(client, "447700900321", part, data_coding=encoding, esm_class=esm_class, registered_delivery=1)
    read_until(client, lambda: len(responses.sent) == 5)
    assert [answer.status for answer in responses.sent] == [0] * 5
    ids = [answer.message_id.decode() if isinstance(answer.message_id, bytes) else answer.message_id
           for answer in responses.sent]
    assert len(set(ids)) == 5
    message = daemon.gateway.message(int(ids[-1]), timeline=False)  # the last part's answer is the message's id
    assert message["body"] == text
    assert message["encoding"] == "ucs2"
    assert all(len(part_id) == 16 for part_id in ids[:4])
    assert daemon.wait_for_final(message["id"], 10, until="report")["status"] == "delivered"
    assert sent_text(daemon, "+447700900321") == text
    read_until(client, lambda: len(responses.received) == 5)  # a receipt for each id the client was given
    receipted = sorted(_text(item.receipted_message_id) for item in responses.received)
    assert receipted == sorted(ids)
    for receipt in responses.received:
        assert receipt.esm_class == 0x04
        assert receipt.message_state == 2
        body = _text(receipt.short_message)
        assert body.startswith(f"id:{_text(receipt.receipted_message_id)} sub:001 dlvrd:001 submit date:")
        assert " stat:DELIVRD err:000 text:" in body
        assert _text(receipt.source_addr) == "447700900321"
    assert daemon.wait_until(lambda: pending(daemon).get(1, {}).get("receipt", 0) == 0, 5)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_a_gsm7_message_in_message_payload_arrives_whole(smpp_daemon, clients):
    daemon = smpp_daemon()
    add_user(daemon)
    client = clients(daemon)
    responses = Responses(client)
    client.bind_transmitter(system_id="app", password=PASSWORD)
    text = ("Meter 4711: reading {1234} kWh, cost €56 [paid] ~ ok | " * 8)[:420]
    septets = smpplib.gsm.gsm_encode(text)  # GSM 03.38, one septet an octet (escapes for € { } [ ] ~ |)
    client.send_message(source_addr="APP", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1,
                        destination_addr="447700900456", short_message=None, message_payload=septets,
                        data_coding=0)
    read_until(client, lambda: responses.sent)
    assert responses.sent[0].status == 0
    message = daemon.gateway.message(int(_text(responses.sent[0].message_id)), timeline=False)
    assert message["body"] == text
    assert message["encoding"] == "gsm7"
    assert message["segments"] == -(-len(septets) // 153)  # our own split, 153 septets a part
    assert daemon.wait_for_final(message["id"], 10)["status"] == "sent"
    assert sent_text(daemon, "+447700900456") == text


def test_an_inbound_sms_arrives_as_deliver_sm(smpp_daemon, clients):
    daemon = smpp_daemon()
    add_user(daemon, receive_inbound=True)
    add_user(daemon, "other")  # takes no inbound SMS
    client = clients(daemon)
    responses = Responses(client)
    client.bind_receiver(system_id="app", password=PASSWORD)
    daemon.simulator.inject_sms(0, "+447700900555", "Is the shop open?")
    daemon.simulator.inject_sms(1, "+447700900556", "Ça coûte 5 €? 👍")
    read_until(client, lambda: len(responses.received) == 2)
    by_sender = {_text(item.source_addr): item for item in responses.received}
    first, second = by_sender["447700900555"], by_sender["447700900556"]
    assert first.source_addr_ton == 1 and first.esm_class == 0 and first.data_coding == 0
    assert first.short_message == smpplib.gsm.gsm_encode("Is the shop open?")
    assert second.data_coding == 8
    assert second.short_message.decode("utf-16-be") == "Ça coûte 5 €? 👍"
    numbers = {device.modem.identity.number.lstrip("+") for device in daemon.simulator.devices}
    assert _text(first.destination_addr) in numbers  # the SIM it came to
    assert daemon.wait_until(lambda: not pending(daemon), 5)  # acknowledged: nothing left in the queue


def test_wrong_password_unknown_system_id_and_disabled_users_cannot_bind(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0)
    user_id = add_user(daemon)
    add_user(daemon, "off")
    accounts.change_account(daemon.store, accounts.find_account(daemon.store, "off")["id"], disabled=True)
    client = raw(daemon)
    assert client.bind(password="wrong") == 0x0E  # ESME_RINVPASWD
    assert client.bind(system_id="nobody") == 0x0F  # ESME_RINVSYSID
    assert client.bind(system_id="off") == 0x0D  # ESME_RBINDFAIL
    assert client.closed()  # three failed binds end the connection
    client = raw(daemon)
    assert client.bind() == 0
    assert client.bind() == 0x05  # ESME_RALYBND
    assert user_id


def test_submits_beyond_the_users_throughput_are_throttled(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0)
    add_user(daemon, throughput=2)
    client = raw(daemon)
    assert client.bind(command_id=0x02) == 0
    client.send(b"".join(struct.pack(">IIII", 16 + len(body), 0x04, 0, sequence) + body
                         for sequence, body in ((sequence, submit_body(text=b"n%d" % sequence))
                                                for sequence in range(10, 15))))
    statuses = {}
    for _ in range(5):
        command_id, status, sequence, _ = client.read()
        assert command_id == 0x80000004
        statuses[sequence] = status
    assert [statuses[sequence] for sequence in (10, 11)] == [0, 0]  # a one-second burst of 2
    assert list(statuses.values()).count(0x58) >= 2  # ESME_RTHROTTLED
    assert daemon.smpp.metrics()["submits"]["throttled"] >= 2


def test_a_user_disabled_deleted_or_given_a_new_password_is_unbound_while_bound(smpp_daemon, raw):
    """`modemgw smpp-users` changes the database from another process: the server's check of its bound sessions
    unbinds the users that may no longer bind, and leaves the others bound with their new throughput."""
    daemon = smpp_daemon(modems=0)
    daemon.smpp.accounts_every = 0.05
    ids = {name: add_user(daemon, name, throughput=5) for name in ("off", "gone", "newpass", "stays")}
    clients = {name: raw(daemon) for name in ids}
    for name, client in clients.items():
        assert client.bind(system_id=name, command_id=0x09) == 0  # transceivers
    assert eventually(lambda: len(daemon.smpp.sessions()) == 4)
    # the new throughput first: the check that unbinds the last of the others has seen it too
    accounts.change_account(daemon.store, ids["stays"], throughput=1)
    accounts.change_account(daemon.store, ids["off"], disabled=True)
    accounts.delete_account(daemon.store, ids["gone"])
    accounts.change_account(daemon.store, ids["newpass"], password="other1")
    for name in ("off", "gone", "newpass"):
        command_id, _, _, _ = clients[name].read()
        assert command_id == 0x00000006, name  # unbind, from the server
        with pytest.raises((EOFError, ConnectionResetError)):
            clients[name].read()  # then the connection closes
    assert eventually(lambda: [session["system_id"] for session in daemon.smpp.sessions()] == ["stays"])
    assert daemon.smpp.metrics()["sessions"] == {("stays", "transceiver"): 1}
    # the one left bound submits at its new throughput: a burst of 1, then ESME_RTHROTTLED
    clients["stays"].send(b"".join(struct.pack(">IIII", 16 + len(body), 0x04, 0, sequence) + body
                                   for sequence, body in ((sequence, submit_body(text=b"n%d" % sequence))
                                                          for sequence in (20, 21, 22))))
    statuses = {sequence: status for _, status, sequence, _ in (clients["stays"].read() for _ in range(3))}
    assert statuses[20] == 0 and 0x58 in (statuses[21], statuses[22])  # (a refusal may be answered first)
    again = raw(daemon)
    assert again.bind(system_id="off") == 0x0D and again.bind(system_id="newpass") == 0x0E


def test_malformed_pdus_get_generic_nack_and_the_session_goes_on(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0)
    add_user(daemon)
    client = raw(daemon)
    client.pdu(0x04, 2, submit_body())  # before a bind
    assert client.read()[:3] == (0x80000004, 0x04, 2)  # ESME_RINVBNDSTS
    assert client.bind() == 0
    client.pdu(0x00000099, 3)  # no such command
    assert client.read()[:3] == (0x80000000, 0x03, 3)  # generic_nack ESME_RINVCMDID
    client.pdu(0x04, 4, submit_body()[:20])  # cut inside destination_addr: the framing holds
    assert client.read()[:3] == (0x80000000, 0x02, 4)  # generic_nack ESME_RINVCMDLEN
    body = submit_body(text=b"hi")
    client.pdu(0x04, 5, body[:-3] + bytes([200]) + b"hi")  # sm_length says 200 octets, 2 follow
    assert client.read()[:3] == (0x80000000, 0x02, 5)
    client.pdu(0x04, 6, body + b"\x04\x24\x00\x10ab")  # a message_payload TLV of 16 octets with 2
    assert client.read()[:3] == (0x80000000, 0xC0, 6)  # ESME_RINVOPTPARSTREAM
    client.pdu(0x15, 7)  # the session is alive
    assert client.read()[:3] == (0x80000015, 0, 7)
    client.pdu(0x04, 8, submit_body(text=b"still here"))
    command_id, status, sequence, answer = client.read()
    assert (command_id, status, sequence) == (0x80000004, 0, 8)
    assert daemon.gateway.message(int(answer.rstrip(b"\0")), timeline=False)["body"] == "still here"
    client.send(struct.pack(">IIII", 8, 0x15, 0, 9))  # command_length 8: the framing is lost
    assert client.read()[:3] == (0x80000000, 0x02, 9)
    assert client.closed()


def test_a_receipt_queued_while_no_receiver_is_bound_goes_out_when_one_binds(smpp_daemon, clients):
    daemon = smpp_daemon()
    add_user(daemon)
    sender = clients(daemon)
    responses = Responses(sender)
    sender.bind_transmitter(system_id="app", password=PASSWORD)
    submit(sender, "447700900777", b"Your code is 1234", registered_delivery=1)
    read_until(sender, lambda: responses.sent)
    message_id = int(_text(responses.sent[0].message_id))
    sender.unbind()
    sender.disconnect()
    assert daemon.wait_for_final(message_id, 10, until="report")["status"] == "delivered"
    assert daemon.wait_until(lambda: pending(daemon).get(1, {}).get("receipt") == 1, 5)
    receiver = clients(daemon)
    received = Responses(receiver)
    receiver.bind_receiver(system_id="app", password=PASSWORD)
    read_until(receiver, lambda: received.received)
    assert _text(received.received[0].receipted_message_id) == str(message_id)
    assert _text(received.received[0].short_message).endswith("stat:DELIVRD err:000 text:Your code is 1234")
    assert daemon.wait_until(lambda: not pending(daemon), 5)


# --- sessions: window, timeouts, unbind, limits ------------------------------------------------------------------


def test_requests_beyond_the_window_get_esme_rmsgqful(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0, window=2)
    add_user(daemon)
    client = raw(daemon)
    assert client.bind(command_id=0x02) == 0
    with daemon.store.transaction():  # the database is busy: the first submit waits in the worker's hands
        client.send(b"".join(struct.pack(">IIII", 16 + len(body), 0x04, 0, sequence) + body
                             for sequence, body in ((sequence, submit_body(text=b"w%d" % sequence))
                                                    for sequence in (1, 2, 3, 4))))
        early = [client.read()[:3] for _ in range(2)]
        assert sorted(early) == [(0x80000004, 0x14, 3), (0x80000004, 0x14, 4)]  # ESME_RMSGQFUL
        assert [session["window"] for session in daemon.smpp.sessions()] == [2]
    late = sorted(client.read()[:3] for _ in range(2))
    assert late == [(0x80000004, 0, 1), (0x80000004, 0, 2)]
    assert daemon.smpp.metrics()["submits"] == {"accepted": 2, "refused": 0, "throttled": 0, "window_full": 2}


def test_a_client_that_keeps_its_window_full_is_never_refused(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0, window=2)
    add_user(daemon)
    client = raw(daemon)
    assert client.bind(command_id=0x02) == 0
    for sequence in (1, 2):
        client.pdu(0x04, sequence, submit_body(text=b"k%d" % sequence))
    statuses = []
    for sequence in range(3, 43):  # the next submit the moment an answer arrives, as Kannel does
        statuses.append(client.read()[1])
        client.pdu(0x04, sequence, submit_body(text=b"k%d" % sequence))
    statuses += [client.read()[1] for _ in range(2)]
    assert statuses == [0] * 42


def test_a_connection_that_does_not_bind_in_time_is_closed(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0, bind_timeout=0.4)
    client = raw(daemon)
    started = time.monotonic()
    client.pdu(0x15, 1)  # enquire_link is answered, but does not keep an unbound connection open
    assert client.read()[:3] == (0x80000015, 0, 1)
    assert client.closed()
    assert 0.35 <= time.monotonic() - started < 4
    assert eventually(lambda: daemon.smpp.sessions() == [], 2)


def test_a_bound_session_without_enquire_link_is_closed_and_one_with_it_stays(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0, enquire_link_timeout=0.6)
    add_user(daemon)
    quiet, chatty = raw(daemon), raw(daemon)
    started = time.monotonic()  # the timeout counts from the last PDU the server read: this bind
    assert quiet.bind() == 0
    assert chatty.bind() == 0
    quiet.sock.settimeout(0.15)
    sequence = 1
    while not quiet.closed():  # each poll waits up to 0.15 s: the chatty client's enquire_link period
        assert time.monotonic() - started < 5, "the quiet session was never closed"
        sequence += 1
        chatty.pdu(0x15, sequence)
        assert chatty.read()[:3] == (0x80000015, 0, sequence)
    assert time.monotonic() - started >= 0.55
    chatty.pdu(0x15, 99)
    assert chatty.read()[:3] == (0x80000015, 0, 99)
    # The server shuts the quiet session's socket first and forgets the session just after, in its own threads.
    assert eventually(lambda: [row["bind"] for row in daemon.smpp.sessions()] == ["transceiver"], 5)


def test_unbind_is_answered_and_ends_the_session(smpp_daemon, clients):
    daemon = smpp_daemon(modems=0)
    add_user(daemon)
    client = clients(daemon)
    client.bind_transceiver(system_id="app", password=PASSWORD)
    assert eventually(lambda: [row["bind"] for row in daemon.smpp.sessions()] == ["transceiver"], 5)
    answer = client.unbind()
    assert answer.command == "unbind_resp" and answer.status == 0
    assert eventually(lambda: daemon.smpp.sessions() == [], 5)


def test_connections_beyond_max_sessions_are_closed(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0, max_sessions=1)
    add_user(daemon)
    first = raw(daemon)
    assert first.bind() == 0
    assert raw(daemon).closed()
    first.pdu(0x15, 2)
    assert first.read()[:3] == (0x80000015, 0, 2)
    assert daemon.smpp.metrics()["sessions"] == {("app", "transceiver"): 1}


def test_stopping_unbinds_the_clients_and_ends_every_thread(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0)
    add_user(daemon)
    client = raw(daemon)
    assert client.bind() == 0
    names = {thread.name for thread in threading.enumerate() if thread.name.startswith("smpp")}
    assert {"smpp-accept", "smpp-outbox"} <= names and len(names) == 4  # and a reader and a worker
    daemon.smpp.stop()
    assert client.read()[0] == 0x06  # unbind
    assert client.closed()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("smpp") and thread.is_alive()]


# --- query_sm, cancel_sm, schedules and validity ---------------------------------------------------------------


def query_body(message_id: str) -> bytes:
    return message_id.encode() + b"\0" + bytes([5, 0]) + b"APP\0"


def cancel_body(message_id: str) -> bytes:
    return b"\0" + message_id.encode() + b"\0" + bytes([5, 0]) + b"APP\0" + bytes([1, 1]) + b"447700900123\0"


def test_a_scheduled_submit_is_queried_and_canceled_with_a_receipt(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0)
    add_user(daemon)
    client = raw(daemon)
    assert client.bind() == 0
    client.pdu(0x04, 2, submit_body(text=b"later", schedule_delivery_time="000001000000000R",
                                    validity_period="000002000000000R", registered_delivery=1, priority_flag=2))
    command_id, status, _, answer = client.read()
    assert status == 0
    message_id = answer.rstrip(b"\0").decode()
    message = daemon.gateway.message(int(message_id), timeline=False)
    assert message["status"] == "scheduled" and message["priority"] == 20
    assert abs(message["due_at"] - (time.time() + 86400)) < 60
    assert abs(message["expires_at"] - (time.time() + 2 * 86400)) < 60
    client.pdu(0x03, 3, query_body(message_id))
    command_id, status, _, answer = client.read()
    assert (command_id, status) == (0x80000003, 0)
    assert answer == message_id.encode() + b"\0" + b"\0" + bytes([6, 0])  # ACCEPTED, no final date yet
    client.pdu(0x03, 4, query_body("123456"))  # not this user's (no such message)
    assert client.read()[:2] == (0x80000003, 0x67)  # ESME_RQUERYFAIL
    client.pdu(0x08, 5, cancel_body(message_id))
    assert client.read()[:3] == (0x80000008, 0, 5)
    assert daemon.gateway.message(int(message_id), timeline=False)["status"] == "canceled"
    receipt = client.read()  # the transceiver gets the receipt: DELETED
    assert receipt[0] == 0x05
    assert b"stat:DELETED" in receipt[3] and b"id:" + message_id.encode() in receipt[3]
    client.pdu(0x80000005, receipt[2], b"\0")
    client.pdu(0x08, 6, cancel_body(message_id))  # once only
    assert client.read()[:3] == (0x80000008, 0x11, 6)  # ESME_RCANCELFAIL
    client.pdu(0x03, 7, query_body(message_id))
    answer = client.read()[3]
    assert answer.endswith(bytes([4, 0])) and len(answer.split(b"\0")[1]) == 16  # DELETED, with its final date
    assert daemon.wait_until(lambda: not pending(daemon), 5)


@pytest.mark.parametrize("options, status", [
    ({"validity_period": "000000000000000R"}, 0x62),  # ESME_RINVEXPIRY: over before it starts
    ({"validity_period": "2612011230"}, 0x62),  # not YYMMDDhhmmsstnnp
    ({"schedule_delivery_time": "261301000000000+"}, 0x61),  # ESME_RINVSCHED: month 13
    ({"priority_flag": 4}, 0x06),  # ESME_RINVPRTFLG
    ({"data_coding": 4}, 0x45),  # 8-bit binary: not a text the gateway sends
    ({"dest_addr_ton": 5}, 0x0B),  # ESME_RINVDSTADR: an alphanumeric destination
])
def test_submits_the_gateway_cannot_take_are_refused_with_their_status(smpp_daemon, raw, options, status):
    daemon = smpp_daemon(modems=0)
    add_user(daemon)
    client = raw(daemon)
    assert client.bind() == 0
    options = {"dest_addr_ton": 1, **options}
    body = smpplib.smpp.make_pdu("submit_sm", sequence=1, source_addr="APP", source_addr_ton=5, dest_addr_npi=1,
                                 destination_addr="447700900123", short_message=b"x", **options).generate()[16:]
    client.pdu(0x04, 2, body)
    assert client.read()[:3] == (0x80000004, status, 2)
    assert daemon.gateway.messages(10) == []


def test_an_invalid_destination_is_refused_by_the_gateways_own_rule(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0)
    add_user(daemon)
    client = raw(daemon)
    assert client.bind() == 0
    client.pdu(0x04, 2, submit_body(to="12"))
    assert client.read()[:3] == (0x80000004, 0x0B, 2)  # ESME_RINVDSTADR


# --- durability across a restart ---------------------------------------------------------------------------------


def test_receipts_and_inbound_sms_from_while_no_smpp_server_ran_are_queued_at_start(smpp_daemon, clients):
    from modemgw.gateway import SubmitRequest

    first = smpp_daemon(data="shared", listen=None)  # no SMPP server: the SMS and receipt come meanwhile
    assert first.smpp is None
    user_id = add_user(first, receive_inbound=True)
    result = first.gateway.send(SubmitRequest("Sent before", "+447700900888", smpp_user_id=user_id))
    message_id = result["messages"][0]["id"]
    assert first.wait_for_final(message_id, 10, until="report")["status"] == "delivered"
    first.simulator.inject_sms(0, "+447700900999", "Came while you were out")
    assert first.wait_until(lambda: first.store.inbox(), 10)
    first.stop()
    second = smpp_daemon(modems=0, data="shared")
    assert eventually(lambda: pending(second).get(user_id) == {"receipt": 1, "inbound": 1}, 5)
    client = clients(second)
    responses = Responses(client)
    client.bind_receiver(system_id="app", password=PASSWORD)
    read_until(client, lambda: len(responses.received) == 2)
    kinds = sorted(item.esm_class for item in responses.received)
    assert kinds == [0, 4]
    receipt = next(item for item in responses.received if item.esm_class == 4)
    assert _text(receipt.receipted_message_id) == str(message_id)
    assert eventually(lambda: not pending(second), 5)
    second.smpp.catch_up()  # nothing twice
    assert not pending(second)


def udh_part(reference: int, total: int, sequence: int, text: str) -> bytes:
    """One part of a message split with an 8-bit concatenation UDH, GSM text."""
    return bytes([5, 0, 3, reference, total, sequence]) + text.encode()


def messages_to(daemon, recipient: str) -> list[dict]:
    return daemon.gateway.messages(50, recipient=recipient)


def test_parts_acknowledged_before_a_crash_are_kept_and_the_message_is_queued_once(smpp_daemon, clients):
    first = smpp_daemon(data="shared")
    user_id = add_user(first)
    client = clients(first)
    responses = Responses(client)
    client.bind_transceiver(system_id="app", password=PASSWORD)
    submit(client, "447700900555", udh_part(7, 2, 1, "First half, "), esm_class=0x40, registered_delivery=1)
    read_until(client, lambda: responses.sent)
    assert responses.sent[0].status == 0
    part_id = _text(responses.sent[0].message_id)
    assert len(part_id) == 16
    client.disconnect()
    first.stop()  # the part is in the database, nothing was queued: as after a crash
    assert messages_to(first, "+447700900555") == []

    second = smpp_daemon(data="shared", assembly_timeout=600)
    [held] = second.store.smpp_part_groups_due(time.time() + 1)
    assert [row["part_id"] for row in held["rows"]] == [part_id]
    # what a crash between the queuing and the parts' deletion would leave: both parts
    held["rows"].append(held["rows"][0] | {"seq": 2, "data": b"second half.", "part_id": None})
    client = clients(second)
    responses = Responses(client)
    client.bind_transceiver(system_id="app", password=PASSWORD)
    submit(client, "447700900555", udh_part(7, 2, 2, "second half."), esm_class=0x40, registered_delivery=1)
    read_until(client, lambda: responses.sent)
    assert responses.sent[0].status == 0
    message_id = int(responses.sent[0].message_id)
    [message] = messages_to(second, "+447700900555")
    assert message["id"] == message_id and message["body"] == "First half, second half."
    assert second.store.smpp_parts_oldest() is None
    # the same group queued again (a crash between the queuing and the parts' deletion): found, not queued twice
    user = second.store.smpp_user_by_system_id("app")
    assert second.smpp._queue_group(user, held, lenient=True) == str(message_id)
    assert len(messages_to(second, "+447700900555")) == 1
    assert second.wait_for_final(message_id, 10, until="report")["status"] == "delivered"
    read_until(client, lambda: len(responses.received) == 2)  # a receipt for each id the client was given
    assert sorted(_text(item.receipted_message_id) for item in responses.received) == sorted(
        [part_id, str(message_id)])
    assert eventually(lambda: pending(second).get(user_id, {}).get("receipt", 0) == 0, 5)


def test_parts_whose_last_never_comes_are_queued_after_the_timeout_after_a_restart(smpp_daemon, clients):
    first = smpp_daemon(data="shared")
    add_user(first)
    client = clients(first)
    responses = Responses(client)
    client.bind_transmitter(system_id="app", password=PASSWORD)
    for sequence, text in ((1, "One, "), (2, "two, ")):
        submit(client, "447700900556", udh_part(9, 3, sequence, text), esm_class=0x40)
    read_until(client, lambda: len(responses.sent) == 2)
    assert [answer.status for answer in responses.sent] == [0, 0]
    client.disconnect()
    first.stop()
    assert messages_to(first, "+447700900556") == []

    second = smpp_daemon(data="shared", assembly_timeout=1)
    assert eventually(lambda: messages_to(second, "+447700900556"), 5)
    [message] = messages_to(second, "+447700900556")
    assert message["body"] == "One, two, "
    assert eventually(lambda: second.store.smpp_parts_oldest() is None, 5)  # dropped right after the queuing


# --- status: the control socket and `modemgw status`, /metrics, the web UI ----------------------------------------


def test_status_metrics_and_the_modems_page_show_the_sessions(smpp_daemon, clients):
    from click.testing import CliRunner

    from modemgw.cli import main
    from modemgw.metrics import Metrics

    daemon = smpp_daemon(modems=1)
    add_user(daemon, receive_inbound=True)
    client = clients(daemon)
    responses = Responses(client)
    client.bind_transmitter(system_id="app", password=PASSWORD)
    submit(client, "447700900123", b"counted")
    read_until(client, lambda: responses.sent)
    daemon.simulator.inject_sms(0, "+447700900555", "waiting for a receiver")
    assert eventually(lambda: pending(daemon).get(1, {}).get("inbound") == 1, 10)
    [session] = daemon.control({"command": "status"})["smpp"]
    assert session["system_id"] == "app" and session["bind"] == "transmitter"
    assert session["peer"].startswith("127.0.0.1:") and session["inbound_pending"] == 1
    assert session["submitted_per_second"] == 0.1  # one in the last ten seconds
    output = CliRunner().invoke(main, ["status", "--data", str(daemon.data_dir)], catch_exceptions=False).output
    assert "SMPP: 1 session" in output
    line = next(line for line in output.splitlines() if line.strip().startswith("app "))
    assert "transmitter" in line and "127.0.0.1:" in line and line.split()[-1] == "1"  # the inbound SMS waiting
    metrics = Metrics(daemon).render().decode()
    assert 'modemgw_smpp_sessions{bind="transmitter",system_id="app"} 1.0' in metrics
    assert 'modemgw_smpp_submits_total{result="accepted"} 1.0' in metrics
    assert 'modemgw_smpp_queued_total{kind="inbound"} 1.0' in metrics
    assert 'modemgw_smpp_pending{kind="inbound",system_id="app"} 1.0' in metrics


def test_status_says_when_the_smpp_server_is_off(smpp_daemon):
    from click.testing import CliRunner

    from modemgw.cli import main

    daemon = smpp_daemon(modems=0, listen=None)
    assert daemon.control({"command": "status"})["smpp"] is None
    output = CliRunner().invoke(main, ["status", "--data", str(daemon.data_dir)], catch_exceptions=False).output
    assert "SMPP" not in output


def test_the_modems_page_lists_smpp_sessions_on_a_phone(smpp_daemon, clients, browser):
    from playwright import sync_api as playwright_api

    import webui

    daemon = smpp_daemon(modems=1, http=True)
    webui.add_user(daemon.store, "alice", "correct horse battery", "operator")
    add_user(daemon, "kannel-office-1")
    client = clients(daemon)
    client.bind_transceiver(system_id="kannel-office-1", password=PASSWORD)
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(daemon.url)
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        playwright_api.expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        page.goto(daemon.url + "ui/modems")
        playwright_api.expect(page.get_by_role("heading", name="SMPP sessions")).to_be_visible()
        row = page.locator("table.smpp-sessions tbody tr")
        playwright_api.expect(row).to_contain_text("kannel-office-1")
        playwright_api.expect(row).to_contain_text("transceiver")
        playwright_api.expect(row).to_contain_text("0 of 10")
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        client.unbind()
        client.disconnect()
        assert eventually(lambda: daemon.smpp.sessions() == [], 5)
        page.reload()
        playwright_api.expect(page.get_by_text("No SMPP client is connected")).to_be_visible()
    finally:
        context.close()


# --- configuration -----------------------------------------------------------------------------------------------


def test_the_smpp_options_are_read_checked_and_documented():
    from pathlib import Path

    from modemgw import config as configuration

    loaded = configuration.apply(configuration.Config(), {"smpp": {
        "listen": "0.0.0.0:2775", "system_type": "modemgw", "window": 20, "enquire_link_timeout": 30,
        "bind_timeout": 5, "max_sessions": 4, "resend_timeout": 10, "assembly_timeout": 120}}).smpp
    assert (loaded.listen, loaded.system_type, loaded.window, loaded.enquire_link_timeout, loaded.bind_timeout,
            loaded.max_sessions, loaded.resend_timeout, loaded.assembly_timeout) == (
        "0.0.0.0:2775", "modemgw", 20, 30.0, 5.0, 4, 10.0, 120.0)
    assert configuration.load(None).smpp.listen is None  # off by default
    for raw, message in [({"listen": "2775"}, "[smpp] listen must be HOST:PORT"),
                         ({"window": 0}, "[smpp] window must be from 1 to 1000 requests"),
                         ({"max_sessions": "many"}, "[smpp] max_sessions must be int"),
                         ({"bind_timeout": 0.5}, "[smpp] bind_timeout must be from 1 to 600 seconds"),
                         ({"system_type": "a-very-long-type"}, "[smpp] system_type must be 1 to 12"),
                         ({"port": 2775}, "[smpp] port is not an option here")]:
        with pytest.raises(configuration.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            configuration.apply(configuration.Config(), {"smpp": raw})
    root = Path(__file__).parent.parent
    example, readme = (root / "deploy" / "config.example.toml").read_text(), (root / "README.md").read_text()
    assert configuration.load(root / "deploy" / "config.example.toml").smpp == configuration.load(None).smpp
    for option in configuration.SMPP_OPTIONS:
        assert f"{option} =" in example, option
        assert f"`{option}`" in readme.split("| `[smpp]` |")[1], f"{option} is not in the README's [smpp] rows"


# --- modemgw smpp-users -----------------------------------------------------------------------------------------


def test_smpp_users_from_the_command_line(tmp_path):
    from click.testing import CliRunner

    from modemgw.cli import main
    from modemgw.gateway import Gateway
    from modemgw.store import Store

    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, [*args, "--data", str(tmp_path)], input=input, catch_exceptions=False)

    added = run("smpp-users", "add", "--system-id", "kannel", "--throughput", "20", "--receive-inbound",
                "--password-stdin", input="s3cret\n")
    assert added.exit_code == 0, added.output
    assert run("smpp-users", "add", "--system-id", "kannel", "--password-stdin", input="other\n").exit_code == 1
    assert "1 to 8 printable ASCII" in run("smpp-users", "add", "--system-id", "jasmin", "--password-stdin",
                                           input="much too long\n").output
    assert run("smpp-users", "add", "--system-id", "jasmin", "--password-stdin", input="j4smin\n").exit_code == 0
    listing = run("smpp-users", "list").output.splitlines()
    assert [line.split()[1:] for line in listing] == [["jasmin", "no", "limit", "-", "enabled"],
                                                      ["kannel", "20/s", "inbound", "enabled"]]
    store = Store(tmp_path / "modemgw.db")
    assert accounts.check_bind(store, "kannel", "s3cret")["throughput"] == 20
    assert run("smpp-users", "passwd", "kannel", "--password-stdin", input="n3w\n").exit_code == 0
    with pytest.raises(accounts.BindRefused):
        accounts.check_bind(store, "kannel", "s3cret")
    assert accounts.check_bind(store, "kannel", "n3w")["system_id"] == "kannel"
    assert run("smpp-users", "set", "kannel", "--no-limit", "--no-receive-inbound").exit_code == 0
    assert run("smpp-users", "disable", "kannel").exit_code == 0
    with pytest.raises(accounts.BindRefused) as refused:
        accounts.check_bind(store, "kannel", "n3w")
    assert refused.value.reason == "disabled"
    assert run("smpp-users", "enable", "kannel").exit_code == 0
    assert accounts.check_bind(store, "kannel", "n3w")["throughput"] is None
    assert run("smpp-users", "delete", "jasmin").exit_code == 0
    missing = run("smpp-users", "delete", "jasmin")
    assert missing.exit_code == 1 and "no SMPP user 'jasmin'" in missing.output
    assert [user["system_id"] for user in accounts.list_accounts(store)] == ["kannel"]
    assert "password_hash" not in accounts.list_accounts(store)[0]
    actions = [(entry["action"], entry["target"], entry["ok"]) for entry in Gateway(store).audit_log()]
    assert ("smpp_user.add", "smpp user kannel", 1) in actions and ("smpp_user.add", "smpp user kannel", 0) in actions
    assert ("smpp_user.delete", "smpp user jasmin", 0) in actions
    assert not any("n3w" in str(entry) or "s3cret" in str(entry) for entry in Gateway(store).audit_log())


# --- the codec (modemgw/smpp/pdu.py) against the specification and an independent decoder (smpplib) ---------------


def test_the_header_length_is_bounded_before_a_body_is_read():
    assert pdu.read_header(struct.pack(">IIII", 16, 0x15, 0, 7)) == pdu.Header(16, 0x15, 0, 7)
    assert pdu.read_header(struct.pack(">IIII", 65536, 4, 0, 1)).length == 65536
    for length in (0, 15, 65537, 0xFFFFFFFF):
        with pytest.raises(pdu.PduError) as error:
            pdu.read_header(struct.pack(">IIII", length, 4, 0, 1))
        assert error.value.status == pdu.ESME_RINVCMDLEN


def test_submit_sm_fields_read_as_smpplib_writes_them():
    body = submit_body(to="447700900123", text=b"Hello", registered_delivery=1, priority_flag=3, data_coding=3,
                       esm_class=3, schedule_delivery_time="261201093000004+", validity_period="000001000000000R")
    submit = pdu.read_submit(body)
    assert (submit.source_ton, submit.source_addr, submit.dest_ton, submit.dest_npi, submit.destination_addr) == (
        5, "APP", 1, 1, "447700900123")
    assert (submit.esm_class, submit.priority_flag, submit.registered_delivery, submit.data_coding) == (3, 3, 1, 3)
    assert (submit.schedule_delivery_time, submit.validity_period) == ("261201093000004+", "000001000000000R")
    assert submit.short_message == b"Hello" and submit.tlvs == {}
    with pytest.raises(pdu.PduError) as error:  # a source_addr of 21 characters leaves no room for its NUL
        pdu.read_submit(b"\0" + bytes([1, 1]) + b"4" * 25 + b"\0")
    assert error.value.status == pdu.ESME_RINVSRCADR


def test_deliver_sm_as_we_write_it_reads_back_in_smpplib():
    receipt = pdu.Deliver(source_addr="447700900321", source_ton=1, source_npi=1, destination_addr="APP",
                          dest_ton=5, esm_class=4, data_coding=0, message=b"id:42 stat:DELIVRD",
                          receipted_message_id="42", message_state=pdu.DELIVERED, network_error=34)
    parsed = smpplib.smpp.parse_pdu(pdu.encode(pdu.DELIVER_SM, 9, pdu.deliver_body(receipt)),
                                    client=smpplib.client.SimpleSequenceGenerator(), allow_unknown_opt_params=True)
    assert parsed.command == "deliver_sm" and parsed.sequence == 9
    assert (_text(parsed.source_addr), parsed.source_addr_ton, _text(parsed.destination_addr)) == (
        "447700900321", 1, "APP")
    assert parsed.esm_class == 4 and parsed.short_message == b"id:42 stat:DELIVRD"
    assert _text(parsed.receipted_message_id) == "42" and parsed.message_state == 2
    long_text = pdu.Deliver(source_addr="447700900555", destination_addr="", data_coding=8,
                            message="ж".encode("utf-16-be") * 200)  # 400 octets: message_payload
    parsed = smpplib.smpp.parse_pdu(pdu.encode(pdu.DELIVER_SM, 10, pdu.deliver_body(long_text)),
                                    client=smpplib.client.SimpleSequenceGenerator(), allow_unknown_opt_params=True)
    assert parsed.sm_length == 0 and parsed.message_payload == "ж".encode("utf-16-be") * 200


@pytest.mark.parametrize("value, expected", [
    ("261201093000000+", "2026-12-01T09:30:00+00:00"),
    ("261201093000004+", "2026-12-01T08:30:00+00:00"),  # 4 quarter hours ahead of UTC
    ("261201093000508-", "2026-12-01T11:30:00.500000+00:00"),  # 5 tenths; 2 hours behind UTC
])
def test_absolute_times(value, expected):
    import datetime as dt

    moment = pdu.parse_time(value, 0, "schedule_delivery_time", pdu.ESME_RINVSCHED)
    assert dt.datetime.fromtimestamp(moment, dt.UTC).isoformat() == expected


def test_relative_times_and_refusals():
    now = 1_800_000_000.0
    assert pdu.parse_time("", now, "x", 0) is None
    assert pdu.parse_time("000001020304000R", now, "x", 0) == now + 86400 + 2 * 3600 + 3 * 60 + 4
    assert pdu.parse_time("010200000000000R", now, "x", 0) == now + (365 + 60) * 86400  # a year 365 days, a month 30
    for bad in ("2612010930", "26120109300000+", "261201093000000*", "26120109300a000+", "261201093000049+"):
        with pytest.raises(pdu.PduError) as error:
            pdu.parse_time(bad, now, "validity_period", pdu.ESME_RINVEXPIRY)
        assert error.value.status == pdu.ESME_RINVEXPIRY


def test_udh_and_sar_concatenation():
    eight = pdu.split_udh(bytes([5, 0x00, 3, 0xAB, 3, 2]) + b"text")
    assert eight == (pdu.Segment(0xAB, 3, 2, b"text"), b"text")
    sixteen = pdu.split_udh(bytes([6, 0x08, 4, 0x12, 0x34, 2, 1]) + b"abc")[0]
    assert sixteen == pdu.Segment(0x1234 | 0x10000, 2, 1, b"abc")  # not the 8-bit reference 0x34
    ports_only = pdu.split_udh(bytes([6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0]) + b"x")
    assert ports_only == (None, b"x")
    for broken in (b"", bytes([9, 0, 3, 1]), bytes([4, 0x00, 3, 1, 2])):
        with pytest.raises(pdu.PduError) as error:
            pdu.split_udh(broken)
        assert error.value.status == pdu.ESME_RINVESMCLASS
    tlvs = {pdu.TAG_SAR_MSG_REF_NUM: b"\x00\x07", pdu.TAG_SAR_TOTAL_SEGMENTS: b"\x02",
            pdu.TAG_SAR_SEGMENT_SEQNUM: b"\x01"}
    assert pdu.sar_segment(tlvs, b"part") == pdu.Segment(7 | 0x20000, 2, 1, b"part")
    assert pdu.sar_segment({}, b"part") is None


def test_texts_in_each_data_coding():
    assert pdu.decode_text(0, smpplib.gsm.gsm_encode("€ {x} @£")) == "€ {x} @£"
    assert pdu.decode_text(1, b"plain") == "plain"
    assert pdu.decode_text(3, "Ça coûte".encode("latin-1")) == "Ça coûte"
    assert pdu.decode_text(8, "👍 ok".encode("utf-16-be")) == "👍 ok"
    assert pdu.decode_text(8, "👍".encode("utf-16-be")[:2], lenient=True) == "\ufffd"
    for coding, data, status in ((0, "é".encode("latin-1"), pdu.ESME_RSUBMITFAIL), (1, b"\xe9", pdu.ESME_RSUBMITFAIL),
                                 (8, b"\x00", pdu.ESME_RINVMSGLEN), (8, "👍".encode("utf-16-be")[:2],
                                                                     pdu.ESME_RSUBMITFAIL),
                                 (4, b"\x01\x02", pdu.ESME_RSUBMITFAIL)):
        with pytest.raises(pdu.PduError) as error:
            pdu.decode_text(coding, data)
        assert error.value.status == status
    assert pdu.encode_text("Hi @ €") == (0, smpplib.gsm.gsm_encode("Hi @ €"))
    assert pdu.encode_text("Hi 👍") == (8, "Hi 👍".encode("utf-16-be"))


def test_every_reader_refuses_any_bytes_with_a_pdu_error_only():
    from hypothesis import given, strategies as st

    @given(st.binary(max_size=400))
    def read_anything(data):
        for reader in (pdu.read_bind, pdu.read_submit, pdu.read_query, pdu.read_cancel, pdu.read_message_id):
            try:
                reader(data)
            except pdu.PduError:
                pass

    read_anything()
    assert pdu.read_bind(b"app\0pw\0\0" + bytes([0x34, 0, 0]) + b"\0").system_id == "app"


def test_receipt_texts_read_the_same_in_ascii_and_gsm():
    from modemgw.smpp import receipts

    message = {"id": 42, "recipient": "+447700900123", "body": "Kosten: 5€ @ [Привет] ok", "status": "failed",
               "created_at": 1_800_000_000.0, "updated_at": 1_800_000_060.0, "delivered_at": None,
               "error_code": 21}
    details = {"ids": ["1000000000000001", "42"], "registered_delivery": 1, "source_addr": "APP", "source_ton": 5}
    first, second = [receipts.from_payload(payload) for payload in receipts.receipts(message, details)]
    assert first.receipted_message_id == "1000000000000001" and second.receipted_message_id == "42"
    text = second.message.decode("ascii")
    assert text.startswith("id:42 sub:001 dlvrd:000 submit date:")
    assert text.endswith(" stat:UNDELIV err:021 text:Kosten: 5? ? ???????")  # the first 20 characters
    assert (second.message_state, second.network_error, second.esm_class) == (pdu.UNDELIVERABLE, 21, 4)
    assert (second.source_addr, second.source_ton, second.destination_addr, second.dest_ton) == (
        "447700900123", 1, "APP", 5)
    assert receipts.receipts(message | {"status": "delivered"}, details | {"registered_delivery": 2}) == []
    assert len(receipts.receipts(message, None)) == 1  # details lost in a crash: the message's own id


def test_a_bind_must_carry_the_configured_system_type(smpp_daemon, raw):
    daemon = smpp_daemon(modems=0, system_type="modemgw")
    add_user(daemon)
    client = raw(daemon)
    assert client.bind(system_type="VMA") == 0x53  # ESME_RINVSYSTYP
    assert client.bind(system_type="modemgw") == 0


def test_a_reply_over_smpp_leaves_from_the_sim_the_number_wrote_to(smpp_daemon, clients):
    daemon = smpp_daemon(modems=2)
    add_user(daemon, receive_inbound=True)
    client = clients(daemon)
    responses = Responses(client)
    client.bind_transceiver(system_id="app", password=PASSWORD)
    daemon.simulator.inject_sms(1, "+447700906001", "Question")
    read_until(client, lambda: responses.received)
    sim_number = _text(responses.received[0].destination_addr)
    submit(client, "447700906001", b"Answer", registered_delivery=1)
    read_until(client, lambda: responses.sent)
    message_id = int(_text(responses.sent[0].message_id))
    assert daemon.wait_for_final(message_id, 10, until="report")["status"] == "delivered"
    assert [record.text for record in daemon.simulator.sent(1) if record.recipient == "+447700906001"] == ["Answer"]
    assert not [record for record in daemon.simulator.sent(0) if record.recipient == "+447700906001"]
    assert "+" + sim_number == daemon.simulator.devices[1].modem.identity.number


def test_a_port_in_use_is_named_in_the_error(smpp_daemon):
    from modemgw.settings import SmppSettings
    from modemgw.smpp import SmppServer

    daemon = smpp_daemon(modems=0)
    with pytest.raises(OSError, match=r"\[smpp\] listen 127\.0\.0\.1:\d+: .*set another port"):
        SmppServer(daemon.gateway, SmppSettings(listen=f"127.0.0.1:{daemon.smpp.port}")).start()
