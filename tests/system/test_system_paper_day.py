"""The live paper path as one system, on loopback (issue 11, section 4, first slice), in sandbox mode (Nautilus's
simulated fills) and in live mode (the venue fills the runtime's real Binance orders by the kernel's rules).

The same stack as `dolphin demo` (``dolphin.demo.Stack``) without Dagster; each process started as a user would:
- `dolphin venue` replaying usdtm-5m-2023 (BTC, DOGE, ETH perpetuals, 2023-07-17 17:30 .. ~19:55, 0.5 s per 5m bar), held at
  the start until the runtime subscribes to its kline streams (`--hold`), so a warm-up that ends at the start
  joins the first replayed bar;
- `dolphin bridge` (scan files -> scan_latest, DOLPHIN_SCAN_EVENTS, acb_state);
- `dolphin runtime sandbox` reaching the venue by configuration only (`--base-url`), the survival stack from the
  embedded feature store under a temporary DOLPHIN_HOME (`--risk store`), warmed up from the venue's REST klines up
  to its last closed bar (`--history venue`).

The test publishes SYNTHETIC healthy risk inputs into the store (``dolphin.demo.RiskFeed``: MC GREEN, DVOL,
order-book quality, refreshed every 2 s; no live publisher of these runs here) and asserts: bars reach the runtime (one scan file per bar close), it trades
(fills journaled), DOLPHIN_STATE_BLUE and DOLPHIN_SAFETY are published, the bridge put the newest scan file into
scan_latest, and every process exits 0 on SIGTERM. The window is chosen where `dolphin backtest` on the same
3 symbols trades: ETHUSDT short entered 2023-07-17 18:15, take-profit 18:50.
"""

import time

import pytest

from dolphin.demo import RiskFeed, Stack
from tests.support.system import SafetyWatch

SYMBOLS = ("BTCUSDT", "DOGEUSDT", "ETHUSDT")  # alphabetical: the order load_panel gives `--history`; SOL and XRP
# have no bars in usdtm-5m-2023 on this day (dropped by the venue and the backtest alike)
START = "2023-07-17T17:30"
DAYS = "0.1"  # 28.8 bars: 17:30 .. 19:55
SPEED = "0.5"  # wall seconds per 5m bar

pytest.importorskip("nautilus_trader")


@pytest.fixture
def home_store(tmp_path, monkeypatch):
    """(data home, its embedded store): this process opens the same store as the stack's processes; no
    Hazelcast or Binance endpoint settings leak in from the shell."""
    from dolphin.adapters.store_factory import open_store_from_env

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DOLPHIN_HOME", str(home))
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "embedded")
    for k in ("DOLPHIN_HZ_MEMBERS", "DOLPHIN_BINANCE_BASE_URL", "DOLPHIN_BINANCE_HTTP_URL",
              "DOLPHIN_BINANCE_WS_MARKET_URL", "DOLPHIN_BINANCE_WS_PRIVATE_URL"):
        monkeypatch.delenv(k, raising=False)
    return home, open_store_from_env()


@pytest.mark.parametrize("mode", ["sandbox", "live"])
def test_paper_day_whole_stack(mode, home_store):
    from dolphin.ledger.journal import FillJournal
    from dolphin.scanner.writer import scan_dir
    from dolphin.store import FEATURES, SCAN_LATEST, state_map
    from dolphin.survival.stack import read_safety
    from dolphin.timeutil import parse_time

    home, store = home_store
    start_ms = parse_time(START)
    feed = RiskFeed(store, SYMBOLS)  # synthetic healthy MC / DVOL / book inputs, refreshed every 2 s
    stack = Stack(home, start=START, days=float(DAYS), speed=float(SPEED), symbols=SYMBOLS, mode=mode)
    procs = stack.procs
    t0 = time.monotonic()
    try:
        stack.start()
        procs["venue"].wait_for(r"replay starts", 120)
        t_replay = time.monotonic()
        procs["venue"].wait_for(r"replay finished", 60)
        t_done = time.monotonic()
        time.sleep(3.0)  # the last bar's decision, scan file, bridge
        journal = FillJournal(home / "ledger" / "ledger.sqlite")
        fills = [e for e in journal.events("BLUE") if e.kind == "fill"]
        scans = sorted(scan_dir().rglob("scan_*.arrow"))
        latest = store.get(FEATURES, SCAN_LATEST)
        state = store.get(state_map("BLUE"), f"runtime_{mode}")
        safety = read_safety(store)
    finally:
        exits = stack.stop()
        feed.stop()
        store.close()
    rt_log = procs["runtime"].text()
    bt = backtest_trades(start_ms)
    print(f"\n{mode}: start-up {t_replay - t0:.1f} s, replay {t_done - t_replay:.1f} s; {len(scans)} scan files; "
          f"{len(fills)} fills journaled; exits (code, s) {exits}")
    for e in fills:
        print(f"  fill {e.role} {e.symbol} {e.side} {e.qty} @ {e.price} fee {e.fee:.4f} capital {e.capital_after:.2f}")
    print(f"backtest: {bt[['entry_time', 'exit_time', 'asset', 'side', 'entry_price', 'exit_price', 'exit_reason']]}")
    assert all(code == 0 for code, _ in exits.values()), (exits, rt_log[-4000:])
    # bars reached the runtime: one scan file per decided bar close (29 replayed bars)
    assert len(scans) >= 28, (len(scans), rt_log[-4000:])
    assert "no market" not in rt_log and "OrderRejected" not in rt_log, rt_log[-6000:]
    assert "warm-up: 2817 bars per symbol from" in rt_log and "restart cold" not in rt_log, rt_log[-6000:]
    # it trades as the backtest does on the same bars: the same entry (bar, asset, side) and exit (TP)
    assert [e.role for e in fills] == ["entry", "tp"], (fills, rt_log[-6000:])
    k = bt.iloc[0]
    assert len(bt) == 1 and k.asset == fills[0].symbol == "ETHUSDT" and k.side == -1 and fills[0].side == "SELL"
    assert k.exit_reason == "take_profit" and fills[1].side == "BUY"
    # sizing: the kernel here runs with neutral risk (Rm 1); the runtime with the survival stack's Rm (Cat5 < 1
    # even at no drawdown), so its notional is the kernel's x Rm, up to the step size (0.01 ETH = 5e-4 here)
    assert safety is not None
    signal_close = 1892.17  # ETHUSDT close of the bar 18:10-18:15: the order's quantity is fixed from it
    assert fills[0].qty * signal_close == pytest.approx(k.notional * safety.rm, rel=1e-3), (fills[0], safety)
    if mode == "sandbox":
        # the same bars: sandbox fills are stamped on the wall clock, so each is placed between the scan files
        # (one per bar close, written at its decision) of the bar closes just before and after the kernel's time
        written = {int(f.stem.split("_")[1]): f.stat().st_mtime_ns for f in scans}
        for e, t in ((fills[0], int(k.entry_time)), (fills[1], int(k.exit_time))):
            assert written[t - 300_000] < e.ts_ns <= written[t + 300_000], (e, t)
        # prices: the sandbox fills a market order at its last price (the signal bar's close), the kernel at the
        # next open + 2 bps slippage; the TP is the same rule (entry x (1 - 95 bps)) on each one's entry price
        assert fills[0].price == pytest.approx(k.entry_price, rel=2e-3)
        assert fills[1].price == pytest.approx(fills[0].price * (1 - 0.0095), rel=1e-4)
    else:
        # live: the venue fills by the kernel's rules and stamps fills in replay time: the same bars, the same
        # prices on Binance's tick (0.01 for ETHUSDT), taker entry and maker take-profit
        assert int(k.entry_time) <= fills[0].ts_ns // 1_000_000 < int(k.entry_time) + 300_000, fills[0]
        assert int(k.exit_time) - 300_000 <= fills[1].ts_ns // 1_000_000 < int(k.exit_time), fills[1]
        assert fills[0].price == round(k.entry_price, 2) and fills[1].price == round(k.exit_price, 2), fills
        assert (fills[0].liquidity, fills[1].liquidity) == ("TAKER", "MAKER")
        # PnL net of fees: the kernel's scaled by the quantity ratio (parity.py's SIZING), up to the tick
        r = fills[0].qty / (k.notional / k.entry_price)
        assert fills[1].capital_after - k.capital_before == pytest.approx(k.pnl * r, abs=0.1), (fills, k.pnl, r)
    assert state is not None and state.value.get("session", "").startswith(f"{mode}:127.0.0.1:")
    # the bridge published the newest scan file
    assert latest is not None and latest.timestamp_ms == int(scans[-1].stem.split("_")[1]), latest


def backtest_trades(start_ms: int):
    """`dolphin backtest` (the kernel) on the same bars: the window plus its warm-up, trading from the start."""
    from dolphin.data import load_panel
    from dolphin.engine.backtest import run_backtest
    from dolphin.engine.config import BLUE
    from dolphin.scanner import scan
    from runtime.replay import warmup_bars

    end_ms = start_ms + int(float(DAYS) * 86_400_000) - 1
    p = load_panel("usdtm-5m-2023", symbols=list(SYMBOLS), start_ms=start_ms, end_ms=end_ms,
                   warmup_bars=warmup_bars(BLUE))
    r = run_backtest(p, scan(p, int(p.open_time[0])), BLUE, trade_from_ms=int(p.close_time[p.warmup_bars]))
    return r.trades


def test_store_outage_hibernates_and_recovers_after_5_healthy_checks(home_store):
    """The embedded store made unavailable mid-replay (its file moved away: every call then raises
    StoreUnavailableError) -> the runtime's next bar-close check is HIBERNATE; the file back -> APEX again after
    5 healthy checks (one per bar close), published to DOLPHIN_SAFETY; every process stays up and exits 0."""
    from dolphin.engine.config import APEX, HIBERNATE
    from dolphin.scanner.writer import scan_dir

    home, store = home_store
    feed = RiskFeed(store, SYMBOLS)
    stack = Stack(home, start=START, days=float(DAYS), speed=float(SPEED), symbols=SYMBOLS)
    # every change of the published posture, with the number of scan files (bar closes) at that time
    watch = SafetyWatch(store, item=lambda t, r: (r.posture, len(list(scan_dir().rglob("scan_*.arrow")))))
    db = store.path if hasattr(store, "path") else home / "store" / "features.sqlite"
    try:
        stack.start()
        stack.procs["venue"].wait_for(r"replay starts", 120)
        deadline = time.monotonic() + 60
        while len(list(scan_dir().rglob("scan_*.arrow"))) < 18 and time.monotonic() < deadline:  # after the TP
            time.sleep(0.05)
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]  # the file, its -wal and -shm
        for p in files:
            p.rename(p.with_name(p.name + ".away"))
        t_out = time.monotonic()
        time.sleep(2.0)  # four bar closes without a store
        for p in files:
            p.with_name(p.name + ".away").rename(p)
        t_back = time.monotonic()
        stack.procs["venue"].wait_for(r"replay finished", 60)
        time.sleep(3.0)
    finally:
        watch.stop()
        exits = stack.stop()
        feed.stop()
        store.close()
    seen = watch.seen
    rt_log = stack.procs["runtime"].text()
    print(f"\noutage {t_back - t_out:.1f} s; posture changes (posture, scan files so far): {seen}; exits {exits}")
    assert all(code == 0 for code, _ in exits.values()), (exits, rt_log[-4000:])
    assert "UNREACHABLE" in rt_log or "unreachable" in rt_log, rt_log[-4000:]
    postures = [p for p, _ in seen]
    assert postures[0] == APEX and HIBERNATE in postures and postures[-1] == APEX, seen
    i = postures.index(HIBERNATE)
    assert APEX in postures[i:], seen
    hib_at, apex_at = seen[i][1], seen[i + postures[i:].index(APEX)][1]
    assert apex_at - hib_at >= 4, seen  # >= 5 healthy checks (bar closes) after the store came back


def _wait(cond, timeout, what, detail=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s" + (f": {detail()}" if detail else ""))


@pytest.mark.parametrize("case", ["live-adopt", "live-tp-while-down", "sandbox-adopt"])
def test_sigkill_mid_trade_restart_reconciles_and_loses_or_doubles_no_fill(case, home_store):
    """The runtime SIGKILLed once its ETHUSDT short is journaled and (live) its take-profit rests at the venue,
    then restarted with the same command:
    - live-adopt: restarted while the venue still holds the short (3 s per bar: the TP is ~20 s away): the
      restart reconciles with the venue's REST, adopts the position, claims the resting TP through Nautilus's
      reconciliation (no second TP), and the TP filling later is journaled by the restarted runtime, once;
    - live-tp-while-down: the TP fills at the venue while the runtime is down: the restart journals that fill from
      the venue's userTrades (same event id scheme), the journal and the venue are flat, nothing is adopted;
    - sandbox-adopt: Nautilus's simulated exchange died with the process: the restart adopts the journal's
      position, re-creates it there (a 'restore' order, neither journaled nor booked) and protects it with the
      TP at the journaled entry's price, which fills later.
    In every case the journal ends with the entry and the take-profit exactly once, at the kernel's bars."""
    from dolphin.demo import Proc
    from dolphin.ledger.journal import FillJournal
    from tests.support.venue import call

    home, store = home_store
    mode = case.split("-")[0]
    speed = 0.5 if case == "live-tp-while-down" else 3.0
    feed = RiskFeed(store, SYMBOLS)
    stack = Stack(home, start=START, days=0.065, speed=speed, symbols=SYMBOLS, mode=mode)  # to 19:05, TP 18:50
    journal = FillJournal(home / "ledger" / "ledger.sqlite")
    roles = lambda: [e.role for e in journal.events("BLUE") if e.kind == "fill"]  # noqa: E731
    base = "http://127.0.0.1:{}"
    again = None
    try:
        stack.start()
        stack.procs["venue"].wait_for(r"replay starts", 120)
        key, secret = stack.env["DOLPHIN_VENUE_API_KEY"], stack.env["DOLPHIN_VENUE_API_SECRET"]
        rest = lambda path, **p: call(base.format(stack.port), "GET", path, p, signed=True, key=key,  # noqa: E731
                                      secret=secret)[1]
        _wait(lambda: roles() == ["entry"], 90, "journaled entry")
        if mode == "live":  # the take-profit is sent after the entry is journaled: let it rest at the venue
            _wait(lambda: rest("/fapi/v1/openOrders", symbol="ETHUSDT"), 10, "resting take-profit")
        else:
            stack.procs["runtime"].wait_for(r"TP", 10)
        t_kill = time.monotonic()
        code, _ = stack.procs["runtime"].stop(timeout=10, sig=9)  # SIGKILL
        assert code == -9
        if case == "live-tp-while-down":
            _wait(lambda: float(rest("/fapi/v2/positionRisk", symbol="ETHUSDT")[0]["positionAmt"]) == 0.0, 30,
                  "take-profit fill at the venue")
        again = Proc("runtime-restart", stack.procs["runtime"].args, stack.env, stack.logdir)
        stack.procs["runtime"] = again  # stopped (SIGTERM) with the stack
        again.wait_for(r"reconcile: |RUNNING|Trader.*RUNNING", 120)
        t_restarted = time.monotonic()
        stack.procs["venue"].wait_for(r"replay finished", 120)
        _wait(lambda: roles() == ["entry", "tp"], 15, "journaled take-profit")
        time.sleep(1.0)
        pos = rest("/fapi/v2/positionRisk", symbol="ETHUSDT")
        orders = rest("/fapi/v1/openOrders", symbol="ETHUSDT")
    finally:
        exits = stack.stop()
        feed.stop()
        store.close()
    out = again.text() if again is not None else ""
    fills = [e for e in FillJournal(home / "ledger" / "ledger.sqlite").events("BLUE") if e.kind == "fill"]
    print(f"\n{case}: restart to running {t_restarted - t_kill:.1f} s after the kill; reconcile lines "
          f"{[ln for ln in out.splitlines() if 'reconcile:' in ln or 'adopted' in ln]}; fills "
          f"{[(e.role, e.side, e.qty, e.price, e.event_id) for e in fills]}; exits {exits}")
    assert all(c == 0 for c, _ in exits.values()), (exits, out[-4000:])
    assert [e.role for e in fills] == ["entry", "tp"], (fills, out[-4000:])
    assert len({e.event_id for e in fills}) == 2
    bt = backtest_trades(parse_ms(START)).iloc[0]
    assert fills[0].symbol == fills[1].symbol == "ETHUSDT" and fills[0].side == "SELL" and fills[1].side == "BUY"
    assert fills[1].qty == fills[0].qty
    assert fills[1].price == pytest.approx(fills[0].price * (1 - 0.0095), rel=1e-4), fills
    if mode == "live":
        assert int(bt.exit_time) - 300_000 <= fills[1].ts_ns // 1_000_000 < int(bt.exit_time), (fills[1], bt)
        assert float(pos[0]["positionAmt"]) == 0.0 and orders == [], (pos, orders)
    # the restart warmed up from the venue's klines at that time (bars that closed while it started: backfilled),
    # so its scanner and regime continued: no cold restart
    feed_lines = [ln[-300:] for ln in out.splitlines() if any(w in ln for w in ("warm-up", "gap in the bar", "backfill"))]
    assert "warm-up: 2817 bars per symbol from" in out and "restart cold" not in out, (feed_lines, out[-3000:])
    if case == "live-adopt":
        assert "adopting ETHUSDT short" in out and "take-profit kept" in out, out[-4000:]
        assert "not reconciled into this strategy" not in out, out[-4000:]
    elif case == "live-tp-while-down":
        assert "journaled a fill made while the runtime was down" in out and "adopting" not in out, out[-4000:]
    else:
        assert "sandbox restart: adopting ETHUSDT short" in out and "RESTORE" in out, out[-4000:]


def parse_ms(s: str) -> int:
    from dolphin.timeutil import parse_time

    return parse_time(s)


def _stale_then_stalker(seen, t_stop, stalker):
    """(time Cat3 first read stale after the stop, time of the first STALKER reading at or after it), or None."""
    stale = next((t for t, _, c in seen if t > t_stop and c == 0.5), None)
    if stale is None:
        return None
    fell = next((t for t, p, _ in seen if t >= stale and p == stalker), None)
    return None if fell is None else (stale, fell)


def test_order_book_publisher_gives_apex_and_stalker_once_its_books_are_30_s_old(home_store):
    """`dolphin book` on the venue's SYNTHETIC depth publishes asset_<SYMBOL>_ob (the other risk inputs are the
    synthetic healthy MC / DVOL): Cat3 comes from those books and the runtime reaches APEX; the publisher stopped
    (SIGTERM), its books age, and at the first check after they are 30 s old Cat3 is stale (0.5) and the posture
    falls to STALKER (after the hysteresis' 2 checks down: one bar close each, 0.5 s here)."""
    from dolphin.engine.config import APEX, STALKER

    home, store = home_store
    feed = RiskFeed(store, SYMBOLS, book=False)
    # 200 bars, 100 s: room for APEX to settle and 30 s of staleness after it (the test stops the stack at STALKER)
    stack = Stack(home, start=START, days=0.7, speed=0.5, symbols=SYMBOLS, book=True)
    # (monotonic time, posture, Cat3) at every change of the published posture or Cat3
    key = lambda r: (r.posture, r.breakdown["Cat3"])  # noqa: E731
    watch = SafetyWatch(store, key=key, item=lambda t, r: (t, *key(r)))
    seen = lambda: list(watch.seen)  # noqa: E731
    t_stop = None

    def apex_on_books():  # not the start-up APEX the first checks keep before any book arrived (Cat3 0.5)
        # (no hold time: the synthetic books' Cat3 dips on wide bars flip APEX/STALKER every 1-2 s, 2 checks)
        now, last = time.monotonic(), (seen() or [None])[-1]
        return now - t_replay > 6.0 and last is not None and last[1] == APEX and last[2] > 0.5
    try:
        stack.start()
        stack.procs["venue"].wait_for(r"replay starts", 120)
        t_replay = time.monotonic()
        _wait(apex_on_books, 40, "APEX with Cat3 from the books", detail=lambda: [
            (round(t - t_replay, 1), p, round(c, 3)) for t, p, c in seen()])
        book_exit = stack.procs["book"].stop(timeout=10)
        t_stop = time.monotonic()
        # the books' own Cat3 can dip on a wide bar (one STALKER before any staleness), so wait for the stale
        # Cat3 and the STALKER that follows it, not for the first STALKER after the stop
        _wait(lambda: _stale_then_stalker(seen(), t_stop, STALKER) is not None, 45,
              "Cat3 stale, then STALKER, after the publisher stopped", detail=lambda: [
                  (round(t - t_stop, 1), p, round(c, 3)) for t, p, c in seen()])
    finally:
        watch.stop()
        exits = stack.stop()
        feed.stop()
        store.close()
    seen = seen()
    rt_log = stack.procs["runtime"].text()
    book_log = stack.procs["book"].text()
    apex = [(p, c) for t, p, c in seen if t < t_stop and p == APEX]
    stale, fell = _stale_then_stalker(seen, t_stop, STALKER)
    print(f"\nbook publisher: APEX with Cat3 {sorted({round(c, 3) for _, c in apex})}; stopped (exit {book_exit}); "
          f"Cat3 stale {stale - t_stop:.1f} s later, STALKER {fell - t_stop:.1f} s later; exits {exits}")
    print("  (s from stop, posture, Cat3):", [(round(t - t_stop, 1), p, round(c, 3)) for t, p, c in seen])
    assert book_exit[0] == 0, book_log[-3000:]
    assert all(code == 0 for code, _ in exits.values()), (exits, rt_log[-3000:])
    # APEX on Cat3 from fresh books (the first checks, before the publisher's first records, saw none: 0.5),
    # and the last reading before the stop was APEX on them
    assert any(c > 0.5 for _, c in apex) and seen[-1][0] > t_stop and [
        (p, c > 0.5) for t, p, c in seen if t < t_stop][-1] == (APEX, True), seen
    # the books' last records are <= ~1 s older than the stop: stale from ~29 s on, at the next check (0.5 s)
    assert 28.0 <= stale - t_stop <= 31.5, seen
    assert fell - stale <= 1.5, seen  # two checks down (hysteresis)
