"""API keys (modemgw.auth) over a real SQLite file: made once and shown once, stored hashed, scoped, revoked,
rate-limited; every refusal says what is wrong."""

import pytest

from modemgw import auth
from modemgw.store import NotFound, Store


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "modemgw.db")


def test_a_key_is_shown_once_and_stored_only_as_a_hash(store):
    key, record = auth.create_key(store, " billing ", ("send", "read"))
    assert key.startswith(f"mgw_{record.prefix}_") and record.name == "billing"
    [row] = auth.list_keys(store)
    assert key not in str(row) and row["name"] == "billing"
    found = auth.Authenticator(store).authenticate(f"Bearer {key}")
    assert (found.id, found.scopes) == (record.id, ("send", "read"))


@pytest.mark.parametrize("header, words", [
    (None, "no API key"),
    ("Basic dXNlcjpwYXNz", "must be 'Bearer <key>'"),
    ("Bearer ", "must be 'Bearer <key>'"),
    ("Bearer sk_live_1234", "not a modemgw API key"),
    ("Bearer mgw_00000000_nothing", "unknown API key"),
])
def test_a_missing_or_wrong_key_is_refused_with_the_reason(store, header, words):
    auth.create_key(store, "app", ("send",))
    with pytest.raises(auth.AuthError, match=words):
        auth.Authenticator(store).authenticate(header)


def test_a_key_with_the_right_prefix_but_another_secret_is_unknown(store):
    key, _ = auth.create_key(store, "app", ("send",))
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(auth.AuthError, match="unknown API key"):
        auth.Authenticator(store).authenticate(f"Bearer {forged}")


def test_a_revoked_key_is_refused_and_cannot_be_revoked_twice(store):
    key, record = auth.create_key(store, "app", ("send",))
    auth.revoke_key(store, record.id)
    with pytest.raises(auth.AuthError, match="revoked"):
        auth.Authenticator(store).authenticate(f"Bearer {key}")
    with pytest.raises(NotFound):
        auth.revoke_key(store, record.id)


@pytest.mark.parametrize("scopes, scope, allowed", [
    (("send",), "send", True), (("send",), "read", False), (("read",), "ussd", False),
    (("ussd",), "ussd", True), (("admin",), "ussd", True), (("admin",), "send", True),
])
def test_admin_implies_every_scope_and_the_others_only_themselves(scopes, scope, allowed):
    assert auth.ApiKey(1, "k", "p", scopes, None, None).allows(scope) is allowed


@pytest.mark.parametrize("text, scopes", [("send,read", ("send", "read")), (["admin"], ("admin",)),
                                          ("send, send , ussd", ("send", "ussd"))])
def test_scopes_are_parsed_and_deduplicated(text, scopes):
    assert auth.parse_scopes(text) == scopes


@pytest.mark.parametrize("text", ["", "send,root", ["write"]])
def test_unknown_scopes_are_refused_naming_the_known_ones(text):
    with pytest.raises(ValueError, match="send, read, ussd, book, admin"):
        auth.parse_scopes(text)


def test_a_keys_rate_limit_says_how_long_to_wait(store):
    _, record = auth.create_key(store, "slow", ("send",), rate_per_minute=2)
    authenticator = auth.Authenticator(store)
    assert [authenticator.throttle(record) for _ in range(2)] == [0.0, 0.0]
    assert 0 < authenticator.throttle(record) <= 60
    _, free = auth.create_key(store, "free", ("send",))
    assert all(authenticator.throttle(free) == 0.0 for _ in range(100))


def test_a_key_needs_a_name(store):
    with pytest.raises(ValueError, match="needs a name"):
        auth.create_key(store, "  ", ("send",))
