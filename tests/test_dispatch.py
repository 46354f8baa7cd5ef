import time

import pytest

from modemgw import dispatch
from modemgw.dispatch import Candidate, QuotaState, RateWindow
from modemgw.gateway import Gateway
from modemgw.store import Store


@pytest.mark.parametrize("times, limit, now, needed, wait", [
    ([], 5, 100.0, 1, 0.0),
    ([50.0, 60.0], None, 100.0, 1, 0.0),
    ([50.0, 60.0, 70.0], 3, 100.0, 1, 10.0),        # the oldest leaves the window at 110
    ([30.0, 60.0, 70.0], 3, 100.0, 1, 0.0),         # 30 is already out of the window
    ([50.0, 60.0], 3, 100.0, 2, 10.0),              # a two-part message needs two free places
    ([95.0], 1, 100.0, 3, 55.0),                    # longer than the allowance: waits for an empty window
])
def test_rate_window(times, limit, now, needed, wait):
    assert RateWindow(times).wait(limit, now, needed) == pytest.approx(wait)


def test_quotas_block_until_the_day_or_month_turns():
    now = time.time()
    day, month = time.strftime("%Y-%m-%d"), time.strftime("%Y-%m")
    assert dispatch.quota_block(QuotaState(10, None, 9, day, 9, month), now) is None
    which, seconds = dispatch.quota_block(QuotaState(10, None, 10, day, 10, month), now)
    assert which == "day" and 0 < seconds <= 86400
    assert dispatch.quota_block(QuotaState(10, None, 10, "2000-01-01", 10, month), now) is None  # a new day
    which, seconds = dispatch.quota_block(QuotaState(None, 100, 0, day, 100, month), now)
    assert which == "month" and 0 < seconds <= 31 * 86400


def test_retry_delay_grows_and_is_capped():
    assert [dispatch.retry_delay(n, 5, 60) for n in range(1, 6)] == [5, 10, 20, 40, 60]


def test_least_used_prefers_the_modem_with_fewest_sends_today():
    candidates = [Candidate(0, sent_today=5, order=0), Candidate(1, sent_today=2, order=1),
                  Candidate(2, sent_today=2, order=2)]
    assert dispatch.choose(candidates, "least-used", 2) == [1, 2]


def test_round_robin_takes_turns():
    candidates = [Candidate(n, order=n) for n in range(3)]
    state = dispatch.RoundRobin()
    assert [dispatch.choose(candidates, "round-robin", 1, state) for _ in range(4)] == [[0], [1], [2], [0]]


def test_health_weighted_prefers_signal_and_success():
    strong = Candidate(0, signal_dbm=-60, order=0)
    weak = Candidate(1, signal_dbm=-105, order=1)
    failing = Candidate(2, signal_dbm=-60, error_rate=0.8, order=2)
    assert dispatch.choose([weak, failing, strong], "health-weighted", 3) == [0, 1, 2]


def test_sticky_recipient_stays_with_its_modem_while_that_modem_is_live(tmp_path):
    store = Store(tmp_path / "s.db")
    gateway = Gateway(store)
    a = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    b = store.attach_modem("356938030000013", "8944010000000000019", label="b")
    first = gateway.submit("one", "+447700900123")["messages"][0]["id"]
    now = time.time() + 1
    store.claim_next(a["id"], "a", None, [("other", None)], now, sticky_to=[a["id"], b["id"]])
    store.record_part_sent(first, 1, a["id"], 1, now, sticky=True, recipient="+447700900123", last=True)
    second = gateway.submit("two", "+447700900123")["messages"][0]["id"]
    assert store.claim_next(b["id"], "b", None, [("other", None)], now, sticky_to=[a["id"], b["id"]]) is None
    assert store.claim_next(b["id"], "b", None, [], now, sticky_to=[b["id"]]).id == second  # a is down
