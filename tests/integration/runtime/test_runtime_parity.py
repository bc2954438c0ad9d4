"""The Nautilus paper replay against the dolphin backtest on the same REAL bars.

Window: 2024-02-26 .. 2024-03-06 (10 UTC days) of spot-5m-2024 with its warm-up tail (2,817 bars:
scanner 751 + vol lookback 2,016 + vol window 50, as `dolphin backtest --start` loads), BLUE, default
risk inputs. BLUE trades 19 times there (asserted >= 5).

Equal: live scans (bits), vol regime, every decision, every trade's entry time / asset / side / exit
time / reason. Tolerated, each named and bounded in runtime/parity.py: SIZING (quantity fixed at
submission from the signal close; PnL, fees and funding must scale exactly with it), PRICE
(instrument price grid, < 1e-9 relative), GAP_TP (none occurs here), LIQ (none may occur).
"""

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import APEX, BLUE, HIBERNATE, RED, STALKER, TURTLE
from dolphin.engine.funding import find_funding_dir
from dolphin.engine.inputs import RiskInputs
from dolphin.paths import resolve_kline_set
from dolphin.scanner import scan
from dolphin.timeutil import DAY_MS, parse_time
from runtime.parity import compare
from runtime.replay import run_replay, warmup_bars

START, END = parse_time("2024-02-26"), parse_time("2024-03-06") + DAY_MS - 1


@pytest.fixture(scope="module")
def window():
    panel = load_panel("spot-5m-2024", start_ms=START, end_ms=END, warmup_bars=warmup_bars(BLUE))
    assert panel.warmup_bars == warmup_bars(BLUE)
    assert (panel.close_time[-1] - panel.close_time[panel.warmup_bars]) // DAY_MS >= 9  # >= 10 days replayed
    return panel, scan(panel, int(panel.open_time[0]))


def _pair(window, risk=None, cfg=BLUE):
    panel, scans = window
    lo = panel.warmup_bars
    bt = run_backtest(panel, scans, cfg, trade_from_ms=int(panel.close_time[lo]), risk=risk)
    rp = run_replay(None, cfg, panel=panel, risk=risk)
    return bt, rp


@pytest.fixture(scope="module")
def default_pair(window):
    return _pair(window)


def test_replay_matches_backtest_trade_for_trade(window, default_pair):
    panel, _ = window
    bt, rp = default_pair
    rep = compare(bt, rp, panel)
    print(rep.describe())
    assert rep.n_kernel >= 5, "window must hold at least 5 BLUE trades"
    assert rep.ok, rep.describe()
    assert rep.scans_equal and rep.vol_ok_equal and rep.decisions_equal and rep.keys_equal
    assert rep.max_price_rel < 1e-9 and rep.gap_tp == 0 and rep.liquidations == 0
    # the only quantity difference is the sizing rule, and it is small on 5m bars
    assert 0.99 < rep.r_min <= rep.r_max < 1.01
    cols = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price", "fees",
            "pnl", "exit_reason"]
    # the backtest's trade columns, in the backtest's order (it also has funding between fees and pnl)
    assert [c for c in rp.trades.columns if c in cols] == [c for c in bt.trades.columns if c in cols] == cols
    # leverage is the same float: same njit function, same inputs
    assert np.array_equal(rp.trades.leverage.to_numpy(), bt.trades.leverage.to_numpy())
    # the strategy's ledger and Nautilus's account agree (no funding on spot data)
    assert rp.capital == pytest.approx(rp.account_balance, abs=1e-6)
    assert rp.capital == pytest.approx(bt.final_capital, rel=1e-3)


def test_open_position_at_the_end_is_closed_like_the_backtest(window):
    """A replay ending while ENSUSDT is short (entered 2024-03-02 05:35): closed at the last close as
    a taker, reason end_of_data, in both."""
    panel, scans = window
    cut = int(np.searchsorted(panel.open_time, parse_time("2024-03-02 12:00")))
    short = panel.slice_bars(0, cut)
    bt = run_backtest(short, scans[:cut], BLUE, trade_from_ms=int(short.close_time[short.warmup_bars]))
    rp = run_replay(None, BLUE, panel=short)
    rep = compare(bt, rp, short)
    assert rep.ok, rep.describe()
    last = rp.trades.iloc[-1]
    assert last.exit_reason == "end_of_data" and last.asset == "ENSUSDT"
    assert last.exit_time == short.close_time[-1]
    assert last.exit_price == pytest.approx(short.close[-1, short.symbols.index("ENSUSDT")] * (1 + 2e-4), rel=1e-12)


def test_replay_honours_scripted_risk_inputs(window):
    """APEX / TURTLE / HIBERNATE, MC RED, Rm and ACB boost from a RiskSource: same decisions and trades
    as the backtest given the same RiskInputs (market orders only, so no named difference beyond SIZING)."""
    panel, _ = window
    T, ct = panel.n_bars, panel.close_time
    risk = RiskInputs.defaults(T)

    def span(a, b):
        return (ct > parse_time(a)) & (ct <= parse_time(b))

    risk.acb_boost[span("2024-02-26", "2024-02-28")] = 1.2
    risk.posture[span("2024-02-28 22:00", "2024-02-29 00:00")] = HIBERNATE  # YGG short open since 21:45
    risk.posture[span("2024-03-02 08:00", "2024-03-02 10:00")] = TURTLE  # ENS short open since 05:35
    risk.mc_status[span("2024-03-04", "2024-03-05")] = RED
    risk.rm[span("2024-03-05", "2024-03-07")] = 0.6
    risk.source = "scripted"
    bt, rp = _pair(window, risk)
    rep = compare(bt, rp, panel)
    print(rep.describe())
    assert rep.ok, rep.describe()
    reasons = set(rp.trades.exit_reason)
    assert {"hibernate", "posture_change"} <= reasons
    entry_row = np.searchsorted(panel.open_time, rp.trades.entry_time.to_numpy()) - 1  # signal bar
    assert (risk.posture[entry_row] == APEX).all() and (risk.mc_status[entry_row] != RED).all()
    assert (rp.trades.leverage[risk.rm[entry_row] == 0.6] <= 0.6 * BLUE.abs_max_leverage + 1e-12).all()
    # the RED day had entry signals in the default run; here none trade
    d0, d1 = parse_time("2024-03-04"), parse_time("2024-03-05")
    assert rp.trades.entry_time.between(d0 + 1, d1).sum() == 0


def test_stalker_enters_with_limits_at_the_signal_close(window):
    """STALKER everywhere: every entry is a LIMIT at the signal bar's close with leverage <= 2x.

    The kernel fills limits as the venue does: one already at/through the market when it reaches the venue
    (open[t+1] >= limit for a short) fills at once at the open as a TAKER; otherwise it rests and fills at
    the limit only when the bar trades strictly through it (MAKER). So backtest and replay agree trade for
    trade, price, fee and PnL (the full parity check), and both sides report the same liquidity."""
    panel, _ = window
    risk = RiskInputs.defaults(panel.n_bars)
    risk.posture[:] = STALKER
    bt, rp = _pair(window, risk)
    assert len(rp.trades) >= 5
    assert bt.decisions_frame().equals(rp.decisions)
    rep = compare(bt, rp, panel)
    print(rep.describe())
    assert rep.ok, rep.describe()
    n = rp.trades
    assert n.maker_entry.all() and (n.leverage <= BLUE.stalker_max_leverage + 1e-12).all()
    assert bt.trades.maker_entry.all()
    sym = {s: j for j, s in enumerate(panel.symbols)}
    j = np.array([sym[a] for a in n.asset])
    t1 = np.searchsorted(panel.open_time, n.entry_time.to_numpy())  # entry bar
    lim = panel.close[t1 - 1, j]  # BLUE shorts: sell limit at the signal close
    opn = panel.open[t1, j]
    assert (n.side == -1).all()
    on_arrival = opn >= lim
    np.testing.assert_allclose(n.entry_price, np.where(on_arrival, opn, lim), rtol=1e-9)
    np.testing.assert_allclose(bt.trades.entry_price, np.where(on_arrival, opn, lim), rtol=1e-12)
    assert list(n.entry_liquidity) == ["TAKER" if a else "MAKER" for a in on_arrival]
    qty = n.notional / n.entry_price
    np.testing.assert_allclose(n.entry_fee, qty * n.entry_price * np.where(on_arrival, BLUE.taker_fee, BLUE.maker_fee),
                               rtol=1e-9, atol=1e-8)  # Nautilus commissions are Money, rounded to 1e-8 USDT
    assert on_arrival.any() and (~on_arrival).any(), "window must exercise both fill paths"
    print(f"STALKER: {len(n)} trades on both sides, {int(on_arrival.sum())} taker entries (marketable on arrival)")


def test_funding_is_charged_like_the_backtest_on_perpetual_data():
    """usdtm-5m-2023: real perpetuals with recorded 8h funding (55 of its 60 assets cover the window)."""
    path = resolve_kline_set("usdtm-5m-2023")
    panel = load_panel(path, start_ms=parse_time("2023-07-17"), end_ms=parse_time("2023-07-19") + DAY_MS - 1,
                       warmup_bars=warmup_bars(BLUE))
    scans = scan(panel, int(panel.open_time[0]))
    lo = panel.warmup_bars
    bt = run_backtest(panel, scans, BLUE, trade_from_ms=int(panel.close_time[lo]), funding_dir=find_funding_dir(path))
    rp = run_replay(None, BLUE, panel=panel, funding_dir=find_funding_dir(path))
    rep = compare(bt, rp, panel)
    print(rep.describe())
    assert rep.ok, rep.describe()
    assert (rp.trades.funding != 0).sum() >= 2
    # Nautilus does not charge funding: its balance is the ledger's plus what the strategy charged
    assert rp.account_balance - rp.capital == pytest.approx(rp.trades.funding.sum(), abs=1e-6)


def test_parity_check_is_not_vacuous(window, default_pair):
    """The comparison flags each kind of difference it claims to guard against."""
    import copy

    panel, _ = window
    bt, rp = default_pair
    assert compare(bt, rp, panel).ok

    def broken(mutate):
        r = copy.copy(rp)
        r.trades = rp.trades.copy()
        r.decisions = rp.decisions.copy()
        r.scan_vel_div = rp.scan_vel_div.copy()
        mutate(r)
        return compare(bt, r, panel)

    def later_exit(r):
        r.trades.loc[3, "exit_time"] += 300_000

    def pnl_cent(r):
        r.trades.loc[5, "pnl"] += 0.01

    def price_tick(r):
        r.trades.loc[0, "exit_price"] *= 1 + 1e-8

    def scan_ulp(r):
        r.scan_vel_div[100] = np.nextafter(r.scan_vel_div[100], np.inf)

    def lev_ulp(r):
        r.decisions.loc[0, "leverage"] = np.nextafter(r.decisions.leverage[0], 0)

    for mutate, what in ((later_exit, "trade lists differ"), (pnl_cent, "PnL"), (price_tick, "PRICE"),
                         (scan_ulp, "scans"), (lev_ulp, "decisions differ")):
        rep = broken(mutate)
        assert not rep.ok and any(what in p for p in rep.problems), (what, rep.problems)


def test_acb_adverse_turn_exits_like_the_backtest(window):
    """ACB boost scripted to fall by 0.35 for an hour every 6 hours: with the adverse-turn exit on, positions
    open across a drop are closed at market, trade for trade as in the backtest (no book data: market)."""
    panel, scans = window
    risk = RiskInputs.defaults(panel.n_bars)
    hour = (panel.open_time // 3_600_000) % 6
    risk.acb_boost[:] = np.where(hour == 5, 0.95, 1.3)
    lo = panel.warmup_bars
    bt = run_backtest(panel, scans, BLUE, trade_from_ms=int(panel.close_time[lo]), risk=risk, acb_adverse_exit=True)
    rp = run_replay(None, BLUE, panel=panel, risk=risk, acb_adverse_exit=True)
    n_acb = int((bt.trades.exit_reason == "acb_adverse_turn").sum())
    assert n_acb >= 1, "the schedule must produce adverse-turn exits"
    assert bt.decisions_frame().equals(rp.decisions)
    rep = compare(bt, rp, panel)
    assert rep.ok, rep.describe()
    assert int((rp.trades.exit_reason == "acb_adverse_turn").sum()) == n_acb
