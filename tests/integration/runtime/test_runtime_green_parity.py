"""GREEN in the runtime: the Nautilus replay trades both legs, sized by the capital arbiter, trade for trade as the
backtest on the same REAL bars (spot-5m-2024, 2024-02-26 .. 2024-02-29 with its warm-up tail: 9 LONG and 4 SHORT trades).

The LONG leg has NOT passed its gate (see the LONG gate's records): this configuration is built in code for the
parity check only (the load-time gate applies to loaders: CLI, Dagster, runtime command); it proves the runtime
does what the engine does once a LONG leg is validated, nothing about the LONG leg's merit."""

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.arbiter import arbiter_weights
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import GREEN_CFG
from dolphin.exf.history import ExfHistory
from dolphin.scanner import scan
from dolphin.timeutil import DAY_MS, parse_time
from runtime.arbiter import LiveArbiter
from runtime.parity import compare
from runtime.replay import run_replay, warmup_bars

START, END = parse_time("2024-02-26"), parse_time("2024-02-29") + DAY_MS - 1
GREEN_BOTH = GREEN_CFG.with_(long_enabled=True)  # TEST-ONLY: LONG unvalidated, parity check only


@pytest.fixture(scope="module")
def window():
    panel = load_panel("spot-5m-2024", start_ms=START, end_ms=END, warmup_bars=warmup_bars(GREEN_BOTH))
    scans = scan(panel, int(panel.open_time[0]))
    arb = arbiter_weights(panel, scans.vel_div / panel.n_assets, GREEN_BOTH, ExfHistory.load())
    return panel, scans, arb


def test_live_arbiter_equals_the_batch_rule_bar_by_bar(window):
    panel, scans, arb = window
    want = arb.per_bar(panel.close_time)
    live = LiveArbiter(GREEN_BOTH, panel.symbols, ExfHistory.load())
    vd = scans.vel_div / panel.n_assets
    trad = ~(panel.filled | panel.excluded)
    got = np.empty_like(want)
    for t in range(panel.n_bars):
        live.push(int(panel.close_time[t]), float(vd[t]), panel.close[t], trad[t])
        got[t] = (live.weight(-1), live.weight(1))
    assert np.array_equal(got, want)
    assert len(np.unique(want[:, 1])) >= 5  # the weights really move over these days


def test_green_replay_matches_backtest_with_long_trades(window):
    panel, scans, arb = window
    lo = panel.warmup_bars
    bt = run_backtest(panel, scans, GREEN_BOTH, trade_from_ms=int(panel.close_time[lo]),
                      leg_weights=arb.per_bar(panel.close_time))
    rp = run_replay(None, GREEN_BOTH, panel=panel)
    rep = compare(bt, rp, panel)
    print(rep.describe())
    assert (bt.trades.side > 0).sum() >= 3 and (bt.trades.side < 0).sum() >= 3, "window must hold both legs"
    assert rep.ok, rep.describe()
    assert rep.decisions_equal and rep.keys_equal
    assert list(rp.trades.side) == list(bt.trades.side)
    # the replay's notionals carry the leg weights: within the sizing tolerance of the backtest's, whose
    # notionals are capital x fraction x leg weight x leverage (tests/unit/dolphin/engine/test_arbiter.py)
    assert 0.99 < rep.r_min <= rep.r_max < 1.01
    assert rp.capital == pytest.approx(bt.final_capital, rel=1e-3)
