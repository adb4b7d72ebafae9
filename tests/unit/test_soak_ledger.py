"""The soak's books (soak/ledger.py) against each channel's promise: a soak that cannot see a
lost message or an unexplained duplicate proves nothing, so its judge is tested here, in
make test, with runs written by hand."""

from __future__ import annotations

from soak.ledger import IN_FLIGHT, RESENT_BREAK, Ledger
from soak.streams import STDIO, TCP, WS


def books() -> Ledger:
    return Ledger({"pipe": STDIO, "net": TCP, "web": WS})


def test_a_gap_below_what_a_durable_sender_sent_is_lost() -> None:
    ledger = books()
    ledger.progress("pipe", "s1", 1.0, 5)  # send() returned for 1..5
    reader = ledger.receiver("r1", "pipe", 0.0)
    ledger.got(reader, 1.5, [["s1", 1], ["s1", 2], ["s1", 4], ["s1", 5]])
    result = ledger.judge(10.0, final=True)["pipe"]
    assert (result.sent, result.received, result.lost) == (5, 4, 1)
    assert result.lost_samples and "s1 seq 3" in result.lost_samples[0]


def test_everything_delivered_once_is_clean() -> None:
    ledger = books()
    ledger.progress("pipe", "s1", 1.0, 3)
    reader = ledger.receiver("r1", "pipe", 0.0)
    ledger.got(reader, 1.5, [["s1", 1], ["s1", 2], ["s1", 3]])
    result = ledger.judge(10.0, final=True)["pipe"]
    assert (result.lost, result.unconfirmed, result.dup_unexplained) == (0, 0, 0)
    assert not result.explained


def test_a_duplicate_on_a_channel_that_never_resends_is_unexplained() -> None:
    ledger = books()
    ledger.progress("pipe", "s1", 1.0, 2)
    reader = ledger.receiver("r1", "pipe", 0.0)
    ledger.got(reader, 1.5, [["s1", 1], ["s1", 2], ["s1", 2]])
    result = ledger.judge(10.0, final=True)["pipe"]
    assert (result.lost, result.dup_unexplained) == (0, 1)


def test_a_tcp_duplicate_across_a_break_is_explained_and_one_without_is_not() -> None:
    ledger = books()
    ledger.progress("net", "s1", 1.0, 4)
    ledger.checkpoint("net", "s1", 9.0, 4, True, "")  # close() confirmed: all four must be there
    first = ledger.receiver("r1", "net", 0.0)
    ledger.got(first, 1.0, [["s1", 1], ["s1", 2]])
    ledger.brk("net", 1.5, "kill-receiver", first)  # the client resends what may be unread
    second = ledger.receiver("r2", "net", 2.5)
    ledger.got(second, 3.0, [["s1", 2], ["s1", 3], ["s1", 4]])  # 2 again: the break explains it
    ledger.got(second, 6.0, [["s1", 4]])  # 4 again, with no break between: unexplained
    result = ledger.judge(20.0, final=True)["net"]
    assert result.lost == 0
    assert result.dup_explained[RESENT_BREAK] == 1
    assert result.dup_unexplained == 1 and "s1 seq 4" in result.dup_samples[0]


def test_ws_loses_what_was_in_flight_when_its_listener_went_and_nothing_else() -> None:
    ledger = books()
    ledger.progress("web", "s1", 1.0, 2)
    ledger.progress("web", "s1", 1.1, 4)
    ledger.progress("web", "s1", 5.0, 6)  # (7 was sent after 5.0 s: long after the break)
    ledger.progress("web", "s1", 6.0, 8)
    first = ledger.receiver("r1", "web", 0.0)
    ledger.got(first, 1.0, [["s1", 1], ["s1", 2]])
    ledger.brk("web", 1.2, "kill-receiver", first)  # 3 and 4 were on their way to it
    second = ledger.receiver("r2", "web", 2.0)
    ledger.got(second, 6.5, [["s1", 5], ["s1", 6], ["s1", 8]])  # 7 went missing with no break
    result = ledger.judge(30.0, final=True)["web"]
    assert result.explained[IN_FLIGHT] == 2
    assert result.lost == 1 and "s1 seq 7" in result.lost_samples[0]
