"""Carried state: running day by day (each day from the previous day's closing state, with only the
history it needs) gives exactly the continuous run -- the basis of day partitions and restarts."""

import json

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE
from dolphin.engine.state import EngineState, StateError
from dolphin.scanner.core import scan
from dolphin.timeutil import DAY_MS, parse_time

CFG = BLUE.with_(max_hold_bars=400)  # long holds: positions and pending orders cross midnight


@pytest.fixture(scope="module")
def data():
    panel = load_panel("spot-5m-2024", start_ms=parse_time("2024-02-20"), end_ms=parse_time("2024-03-20"))
    return panel, scan(panel, int(panel.open_time[0]), None)


def test_day_by_day_equals_continuous(data):
    panel, scans = data
    hist = CFG.vol_lookback + CFG.vol_window + 2
    day = panel.open_time // DAY_MS
    starts = [int(i) for i in np.flatnonzero(np.r_[True, day[1:] != day[:-1]]) if i >= hist]
    first = starts[0]
    cont = run_backtest(panel, scans, CFG, trade_from_ms=int(panel.close_time[first]), close_at_end=False)
    state = EngineState.fresh(CFG.initial_capital)
    trades, carried_midnight = [], 0
    for a, b in zip(starts, starts[1:] + [panel.n_bars]):
        p, s = panel.slice_bars(a - hist, b), scans[a - hist:b]
        r = run_backtest(p, s, CFG, trade_from_ms=int(p.close_time[hist]), state=state, close_at_end=False)
        # the state survives a JSON round trip (what the ledger stores)
        state = EngineState.from_dict(json.loads(json.dumps(r.final_state.to_dict())))
        carried_midnight += bool(state.position or state.pending)
        trades.append(r.trades)
        assert r.equity[-1] == cont.equity[b - 1]
    import pandas as pd

    chained = pd.concat(trades, ignore_index=True)
    ref = cont.trades
    cols = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price", "fees",
            "funding", "pnl", "exit_reason"]
    assert len(ref) >= 5 and carried_midnight >= 1, "the window must exercise carried positions"
    pd.testing.assert_frame_equal(chained[cols], ref[cols])
    assert state.to_dict() == cont.final_state.to_dict()


def test_runs_out_of_order_are_refused(data):
    panel, scans = data
    r = run_backtest(panel, scans, CFG, close_at_end=False)
    with pytest.raises(StateError, match="in order"):
        run_backtest(panel, scans, CFG, state=r.final_state)


def test_position_outside_universe_is_refused(data):
    panel, scans = data
    st = EngineState.fresh(1000.0)
    st.position = {"symbol": "NOPEUSDT"}
    with pytest.raises(StateError, match="NOPEUSDT"):
        run_backtest(panel, scans, CFG, state=st)
