"""E-mail out: the `mail_outbox` table, sent through the configured SMTP relay (`[smtp]`) by one thread.

Inbound rules (and anything else through `Gateway.queue_mail`) only write a row: nothing in the inbound path
waits on SMTP. `MailSender` reads the due rows, sends them with smtplib over one connection per round (STARTTLS
and login when configured), and records each outcome: sent; tried again after `RETRY_SCHEDULE` (about a day in
all) when the relay was unreachable or answered 4xx; dead at once when the relay refused it for good (5xx). With
no relay configured, e-mails wait in the outbox (the rules page says so) until one is.

Each e-mail says it was generated (`Auto-Submitted: auto-generated`, RFC 3834), so that mail auto-responders do
not answer it. An e-mail being sent when the gateway stops is sent again after the restart (its outcome was not
recorded): a rare duplicate rather than a loss.
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import socket
import ssl
import threading
import time
from email.message import EmailMessage

from modemgw.settings import SmtpSettings
from modemgw.store import Store, StoreError

log = logging.getLogger("modemgw.mail")

# Seconds before each retry: about a day in all, then the e-mail is dead.
RETRY_SCHEDULE = (30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800)
BATCH = 20            # e-mails sent over one connection
_ERROR_CHARS = 500    # of a failure kept in last_error
_REST = 5.0           # seconds to wait after the database failed


class MailSender(threading.Thread):
    """Sends the mail outbox through the `[smtp]` relay. `wake()` after queuing an e-mail; `stop()` at shutdown."""

    def __init__(self, store: Store, settings: SmtpSettings, schedule: tuple[float, ...] = RETRY_SCHEDULE,
                 tls: ssl.SSLContext | None = None):
        super().__init__(name="mail", daemon=True)
        self.store = store
        self.settings = settings
        self.schedule = schedule
        self.tls = tls
        self._wake = threading.Condition()
        self._poked = False
        self._stopping = False

    @property
    def relay(self) -> str | None:
        """"host:port" of the relay, or None when none is configured."""
        return f"{self.settings.host}:{self.settings.port}" if self.settings.host else None

    def wake(self) -> None:
        with self._wake:
            self._poked = True  # remembered, so a wake-up between a check and the wait is not lost
            self._wake.notify()

    def stop(self) -> None:
        """Stop sending. An e-mail being sent ends by the relay's timeout; its outcome is not recorded, so it is
        sent again after a restart."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        if not self.settings.host:
            log.info("no [smtp] host configured: e-mails wait in the outbox")
        while not self._stopping:
            with self._wake:
                self._poked = False
            try:
                wait = self.send_due()
            except StoreError as error:  # a full or locked database: the outbox is intact, try again shortly
                log.error("mail sender: %s", error)
                wait = _REST
            except Exception:  # the outbox survives any fault; try again shortly
                log.exception("mail sender")
                wait = _REST
            with self._wake:
                if not self._poked and not self._stopping:
                    self._wake.wait(wait)

    def send_due(self) -> float | None:
        """Send what is due (in rounds of BATCH); seconds until the next e-mail falls due (None: none waits, or
        no relay is configured). Raises StoreError."""
        if not self.settings.host:
            return None
        while not self._stopping:
            rows = self.store.due_mail(time.time(), BATCH)
            if not rows:
                break
            for row, error, permanent in self._deliver(rows):
                self._record(row, error, permanent)
            if len(rows) < BATCH:
                break
        next_at = self.store.next_mail_after(time.time())
        return None if next_at is None else max(0.05, next_at - time.time())

    def _record(self, row: dict, error: str | None, permanent: bool) -> None:
        attempts = row["attempts"] + 1
        now = time.time()
        retry_at = None
        if error is not None and not permanent and attempts <= len(self.schedule):
            retry_at = now + self.schedule[attempts - 1]
        self.store.record_mail_attempt(row["id"], attempts, now, error and error[:_ERROR_CHARS], retry_at)
        if error is None:
            log.info("e-mail %s sent to %s", row["id"], ", ".join(row["recipients"]))
        elif retry_at is None:
            log.warning("e-mail %s to %s is dead after %d attempts: %s", row["id"], ", ".join(row["recipients"]),
                        attempts, error)
        else:
            log.warning("e-mail %s to %s failed (attempt %d), tried again later: %s", row["id"],
                        ", ".join(row["recipients"]), attempts, error)

    def message(self, row: dict) -> EmailMessage:
        """The e-mail of an outbox row, as the relay gets it."""
        sender = self.settings.from_address or f"modemgw@{socket.gethostname() or 'localhost'}"
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(row["recipients"])
        message["Subject"] = " ".join(row["subject"].split())
        message["Date"] = email.utils.formatdate(row["created_at"], localtime=True)
        message["Message-ID"] = email.utils.make_msgid("modemgw", domain=sender.rpartition("@")[2] or "localhost")
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(row["body"])
        return message

    def _deliver(self, rows: list[dict]) -> list[tuple[dict, str | None, bool]]:
        """Send `rows` over one connection: (row, error or None, whether the error is permanent) for each. Never
        raises: a failure to connect or log in is every row's failed attempt."""
        settings = self.settings
        assert settings.host is not None
        outcomes: list[tuple[dict, str | None, bool]] = []
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
                if settings.starttls:
                    smtp.starttls(context=self.tls or ssl.create_default_context())
                if settings.username:
                    smtp.login(settings.username, settings.password or "")
                for row in rows:
                    outcomes.append((row, *self._send_one(smtp, row)))
        except (OSError, smtplib.SMTPException) as error:
            reason = _reason(error)
            outcomes += [(row, f"relay {self.relay}: {reason}", False) for row in rows[len(outcomes):]]
        return outcomes

    def _send_one(self, smtp: smtplib.SMTP, row: dict) -> tuple[str | None, bool]:
        try:
            refused = smtp.send_message(self.message(row), to_addrs=row["recipients"])
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            return f"every recipient refused: {_refusals(error.recipients)}", all(code >= 500 for code in codes)
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as error:
            return _reason(error), error.smtp_code >= 500
        except (ValueError, UnicodeError) as error:  # a row no relay could take: retrying cannot help
            return f"cannot be sent: {error}", True
        if refused:
            log.warning("e-mail %s: some recipients refused: %s", row["id"], _refusals(refused))
        return None, False


def _refusals(recipients: dict) -> str:
    return "; ".join(f"{address} ({code} {_text(answer)})" for address, (code, answer) in recipients.items())


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)


def _reason(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


__all__ = ["BATCH", "RETRY_SCHEDULE", "MailSender"]
