import pytest

from agent.status import Thresholds, evaluate
from outbox.queue import Counts

NOW = 1_700_000_000.0
LIMITS = Thresholds(sla_s=60, offline_alert_after_s=900, disk_min_free_mb=500)


def counts(**overrides: object) -> Counts:
    fields: dict[str, object] = dict(
        ready=0,
        in_flight=0,
        acked=10,
        held=0,
        rejected=0,
        discarded=0,
        exceptions_open=0,
        oldest_pending_enqueued_at=None,
        last_acked_at=NOW - 5,
    )
    fields.update(overrides)
    return Counts(**fields)  # type: ignore[arg-type]


def live(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {"running": True, "heartbeat_at": NOW - 1, "wms_reachable": True}
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("c", "live_values", "disk", "state", "words"),
    [
        (counts(), live(), 10_000, "green", "in sync"),
        (counts(ready=3, oldest_pending_enqueued_at=NOW - 5), live(), 10_000, "green", "3 movements on their way"),
        (
            counts(ready=3, oldest_pending_enqueued_at=NOW - 120),
            live(),
            10_000,
            "amber",
            "oldest unsent movement is 2 min old",
        ),
        (counts(), live(wms_reachable=False, offline_since=NOW - 60), 10_000, "amber", "WMS unreachable for 60 s"),
        (counts(), live(paused=True), 10_000, "amber", "paused"),
        (counts(), live(wms_reachable=False, offline_since=NOW - 3600), 10_000, "red", "WMS unreachable for 60 min"),
        (counts(), live(auth_failed=True), 10_000, "red", "refused possync's credentials"),
        (counts(exceptions_open=2), live(), 10_000, "red", "2 exceptions waiting"),
        (counts(), live(), 100, "red", "disk nearly full"),
        (counts(), live(heartbeat_at=NOW - 60), 10_000, "grey", "not running"),
        (counts(), live(running=False), 10_000, "grey", "not running"),
        (counts(), {}, 10_000, "grey", "not running"),
    ],
)
def test_every_state(c: Counts, live_values: dict[str, object], disk: float, state: str, words: str) -> None:
    got, reasons = evaluate(c, live_values, LIMITS, NOW, disk)
    assert got == state
    assert any(words in r for r in reasons), reasons


def test_red_reasons_come_before_amber_ones() -> None:
    state, reasons = evaluate(counts(exceptions_open=1), live(paused=True), LIMITS, NOW, 10_000)
    assert state == "red" and "exception" in reasons[0] and "paused" in reasons[-1]


def test_backlog_growing_minute_after_minute_is_amber() -> None:
    rising = [{"pending": n} for n in (10, 20, 30, 40, 50, 60)]
    state, reasons = evaluate(counts(ready=60, oldest_pending_enqueued_at=NOW - 5), live(), LIMITS, NOW, 10_000, rising)
    assert state == "amber" and "backlog growing for 5 min (60 waiting)" in reasons
    wobbly = [{"pending": n} for n in (10, 20, 15, 40, 50, 60)]
    assert evaluate(counts(), live(), LIMITS, NOW, 10_000, wobbly)[0] == "green"


def test_a_source_in_error_is_amber_with_its_problem() -> None:
    sources = {"receipt-tap": {"state": "error", "last_error": "port /dev/ttyUSB0 is gone"}, "pos": {"state": "ok"}}
    state, reasons = evaluate(counts(), live(sources=sources), LIMITS, NOW, 10_000)
    assert state == "amber" and reasons == ["source receipt-tap has a problem: port /dev/ttyUSB0 is gone"]
