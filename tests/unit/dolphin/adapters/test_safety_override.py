"""The operator's manual safety override (dolphin.adapters.safety_override_sqlite): audited in the ledger, expires
by itself, honoured by the runtime's risk source (bar clock, a real embedded store), shown by `dolphin status`."""

from datetime import datetime, timedelta, timezone

import pytest

from dolphin.cli import main
from dolphin.engine.config import APEX, HIBERNATE, STALKER, TURTLE
from dolphin.ledger import CapitalLedger
from dolphin.status import collect, render
from dolphin.store import ACB_STATE, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, Record, asset_ob_key, iso_utc
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.adapters.safety_override_sqlite import (OverrideError, active_override, clear_override,
                                                    list_overrides, parse_duration, set_override)
from runtime.risk import StoreRiskSource
from tests.support.risk import _acb, _mc

S = 1_000_000_000
T0 = 1_790_000_000 * S


def test_set_expire_clear_and_the_audit_is_append_only(tmp_path):
    led = tmp_path / "ledger.sqlite"
    assert active_override(led, T0) is None and list_overrides(led) == []
    assert not led.exists()  # reading creates nothing
    o = set_override(led, "turtle", "exchange incident", 600, "ana", now_ns=T0)
    assert (o.posture, o.who, o.until_ns) == (TURTLE, "ana", T0 + 600 * S)
    assert active_override(led, T0 - 1) is None  # as of before it was set: not in force (no look-ahead)
    assert active_override(led, T0).posture == TURTLE
    assert active_override(led, T0 + 599 * S).seq == o.seq
    assert active_override(led, T0 + 600 * S) is None  # expired by itself
    # a newer override replaces it; a clear ends it; every row stays
    set_override(CapitalLedger(led), "HIBERNATE", "venue down", 3600, "bo", now_ns=T0 + 10 * S)
    assert active_override(led, T0 + 20 * S).posture == HIBERNATE
    clear_override(led, "venue back", "bo", now_ns=T0 + 30 * S)
    assert active_override(led, T0 + 31 * S) is None
    assert active_override(led, T0 + 25 * S).posture == HIBERNATE  # history as of its time is unchanged
    rows = list_overrides(led)
    assert [(r.kind, r.who, r.reason) for r in rows] == [("set", "ana", "exchange incident"),
                                                         ("set", "bo", "venue down"), ("clear", "bo", "venue back")]
    assert "until" in rows[0].describe(T0) and "left" in rows[0].describe(T0)
    # the ledger's own capital chain shares the file untouched
    assert CapitalLedger(led).current("BLUE") == []


def test_bad_overrides_are_refused_and_nothing_is_written(tmp_path):
    led = tmp_path / "ledger.sqlite"
    for kw, msg in [(dict(posture="CALM"), "posture"), (dict(reason="  "), "reason"), (dict(ttl_s=0), "ttl"),
                    (dict(ttl_s=8 * 86400), "7 days"), (dict(ttl_s="x"), "ttl")]:
        args = {"posture": "TURTLE", "reason": "r", "ttl_s": 60, **kw}
        with pytest.raises(OverrideError, match=msg):
            set_override(led, args["posture"], args["reason"], args["ttl_s"], "ana", now_ns=T0)
    assert list_overrides(led) == []
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400 and parse_duration("2d") == 172800
    assert parse_duration("45") == 45
    for bad in ("", "5x", "-3m", "0s", "1h junk"):
        with pytest.raises(OverrideError):
            parse_duration(bad)


def test_cli_override_list_clear(tmp_path, capsys):
    led = tmp_path / "l.sqlite"
    assert main(["safety", "override", "--posture", "stalker", "--reason", "manual check", "--ttl", "15m",
                 "--ledger", str(led), "--who", "ops"]) == 0
    assert "STALKER until" in capsys.readouterr().out
    import time
    o = active_override(led, time.time_ns())
    assert o.posture == STALKER and o.who == "ops" and 890 <= o.remaining_s(time.time_ns()) <= 900
    assert main(["safety", "list", "--ledger", str(led)]) == 0
    assert "in force: STALKER" in capsys.readouterr().out
    assert main(["safety", "clear", "--ledger", str(led), "--reason", "done"]) == 0
    assert "ended: STALKER" in capsys.readouterr().out
    assert active_override(led, time.time_ns()) is None
    assert main(["safety", "override", "--posture", "TURTLE", "--reason", "x", "--ttl", "soon",
                 "--ledger", str(led)]) == 2
    assert "duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["safety", "override", "--posture", "TURTLE", "--ttl", "5m", "--ledger", str(led)])  # no reason


def _healthy_store(path, t):
    store = EmbeddedStore(path)
    store.put(FEATURES, ACB_STATE, _acb(t))
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc("GREEN", t))
    store.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 55.0}, iso_utc(t)))
    store.put(FEATURES, asset_ob_key("BTCUSDT"), Record({"depth_quality": 1.0, "fill_prob": 1.0}, iso_utc(t)))
    return store


def test_runtime_risk_source_honours_the_override_and_returns_to_the_stack_after(tmp_path, caplog):
    t = datetime(2026, 9, 21, 12, tzinfo=timezone.utc)
    store = _healthy_store(tmp_path / "features.sqlite", t)
    led = tmp_path / "ledger.sqlite"
    t0 = int(t.timestamp()) * S
    src = StoreRiskSource(store, symbols=("BTCUSDT",), clock="bar", publish=False, override_ledger=led)
    try:
        assert src.read(t0).posture == APEX  # no override: the stack says APEX on healthy inputs
        set_override(led, "TURTLE", "test: block entries", 600, "ops", now_ns=t0 + 60 * S)
        store.put(FEATURES, asset_ob_key("BTCUSDT"), Record({"depth_quality": 1.0, "fill_prob": 1.0},
                                                            iso_utc(t + timedelta(seconds=50))))
        snap = src.read(t0 + 60 * S)
        assert snap.posture == TURTLE and 0.10 <= snap.rm < 0.40  # Rm clipped into TURTLE's band
        assert src.override is not None and "safety override TURTLE" in caplog.text
        assert src.controller.posture == APEX  # the stack's own state is untouched underneath
        store.put(FEATURES, asset_ob_key("BTCUSDT"), Record({"depth_quality": 1.0, "fill_prob": 1.0},
                                                            iso_utc(t + timedelta(seconds=690))))
        after = src.read(t0 + 700 * S)  # expired by itself
        assert after.posture == APEX and after.rm >= 0.85 and src.override is None
        assert "ended" in caplog.text
        # an override cannot lift an invariant kill: Cat1 = 0 stays HIBERNATE
        set_override(led, "APEX", "test: force full", 600, "ops", now_ns=t0 + 800 * S)
        from runtime.risk import StoreInputs
        killed = src._decide(StoreInputs(False, error="down"), (t0 + 801 * S) // 1_000_000, "x")
        assert killed.posture == HIBERNATE
    finally:
        src.close()
        store.close()


def test_unreadable_override_table_is_no_override_said_once(tmp_path, caplog):
    t = datetime(2026, 9, 21, 12, tzinfo=timezone.utc)
    store = _healthy_store(tmp_path / "features.sqlite", t)
    bad = tmp_path / "ledger.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    src = StoreRiskSource(store, symbols=("BTCUSDT",), clock="bar", publish=False, override_ledger=bad)
    try:
        t0 = int(t.timestamp()) * S
        assert src.read(t0).posture == APEX and src.read(t0 + S).posture == APEX
        assert caplog.text.count("safety override unreadable") == 1
    finally:
        src.close()
        store.close()


def test_status_shows_the_override(home):
    import time
    set_override(home / "ledger" / "ledger.sqlite", "HIBERNATE", "planned maintenance", 3600, "ops")
    rep = collect("BLUE")
    assert rep["ledger"]["override"]["posture_name"] == "HIBERNATE"
    line = next(ln for ln in render(rep).splitlines() if "OVERRIDE" in ln)
    assert "HIBERNATE until" in line and "planned maintenance" in line and "ops" in line
    clear_override(home / "ledger" / "ledger.sqlite", now_ns=time.time_ns())
    assert "OVERRIDE" not in render(collect("BLUE"))
