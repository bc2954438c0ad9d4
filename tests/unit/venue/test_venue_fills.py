"""The venue's matching and accounting on real candles (in process, the clock driven by hand): fills follow
the backtest kernel's rules (dolphin/engine/kernel.py step 1 and the resting take-profit), fees, realised
PnL, reduce-only, post-only, funding at the recorded funding times, the JSON snapshot."""

import numpy as np
import pytest

from dolphin.timeutil import parse_time
from venue.exchange import Exchange, VenueError
from venue.market import Market

SLIP, MAKER, TAKER = 2.0, 0.0002, 0.0005


@pytest.fixture(scope="module")
def market_args():
    return dict(start_ms=parse_time("2023-07-05"), days=1, symbols=["BTCUSDT", "ETHUSDT"], history_bars=50)


def venue(market_args, **kw):
    m = Market("usdtm-5m-2023", **market_args)
    events = []
    ex = Exchange(m, capital=25_000.0, maker_fee=MAKER, taker_fee=TAKER, slippage_bps=SLIP, **kw)
    ex.emit = events.append
    return m, ex, events


def advance(m, ex, n=1):
    for _ in range(n):
        ex.on_bar_close(m.cur + 1)


def test_market_order_fills_at_next_open_with_slippage_and_taker_fee(market_args):
    m, ex, events = venue(market_args)
    advance(m, ex, 3)
    j, t = m.index["BTCUSDT"], m.cur + 1
    r = ex.new_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.100"})
    assert r["status"] == "NEW"  # Binance answers before matching
    px = round(m.open[t, j] * (1 - SLIP * 1e-4), 1)  # kernel: open[t] * (1 + side * slippage), on the tick
    o = ex.acct.orders[r["orderId"]]
    assert o.status == "FILLED" and o.cumQuote == pytest.approx(0.1 * px)
    assert ex.pos("BTCUSDT").amt == pytest.approx(-0.1) and ex.pos("BTCUSDT").entry == pytest.approx(px)
    assert ex.acct.wallet == pytest.approx(25_000 - 0.1 * px * TAKER)
    kinds = [(e["e"], e.get("o", {}).get("x")) for e in events]
    assert kinds == [("ORDER_TRADE_UPDATE", "NEW"), ("ORDER_TRADE_UPDATE", "TRADE"), ("ACCOUNT_UPDATE", None)]
    trade = events[1]["o"]
    assert trade["X"] == "FILLED" and trade["L"] == f"{px:.1f}" and trade["m"] is False and trade["N"] == "USDT"


def test_resting_limit_fills_only_when_a_bar_trades_through_it(market_args):
    m, ex, events = venue(market_args)
    advance(m, ex, 3)
    j = m.index["ETHUSDT"]
    t0 = m.cur + 1
    lows = m.low[t0:, j]
    # a buy limit exactly at a later bar's low that no bar between trades below: touching does not fill
    k = next(i for i in range(2, 60) if lows[i] < lows[:i].min() and (lows[i + 1:i + 4] > lows[i]).all())
    price = round(float(lows[k]), 2)
    r = ex.new_order({"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "1.000", "price": f"{price:.2f}"})
    o = ex.acct.orders[r["orderId"]]
    advance(m, ex, k + 4)
    assert o.status == "NEW", "a bar whose low only touches the limit must not fill it"
    # the kernel's rule on real candles: first later bar with low < price fills at min(price, open), maker
    rest = np.flatnonzero(m.low[m.cur + 1:, j] < price)
    assert rest.size, "data: no bar trades through"
    t_hit = m.cur + 1 + int(rest[0])
    advance(m, ex, t_hit - m.cur)
    assert o.status == "FILLED"
    px = min(price, float(m.open[t_hit, j]))
    assert o.cumQuote == pytest.approx(px) and ex.acct.trades[-1]["maker"] is True
    assert ex.acct.wallet == pytest.approx(25_000 - px * MAKER)


def test_marketable_limit_fills_at_open_as_taker_and_post_only_expires(market_args):
    m, ex, events = venue(market_args)
    advance(m, ex, 2)
    j, t = m.index["BTCUSDT"], m.cur + 1
    above = f"{m.open[t, j] + 50:.1f}"
    r = ex.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "0.010", "price": above})
    o = ex.acct.orders[r["orderId"]]
    assert o.status == "FILLED" and o.cumQuote == pytest.approx(0.01 * m.open[t, j])  # no slippage
    assert ex.acct.trades[-1]["maker"] is False
    r = ex.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTX",
                      "quantity": "0.010", "price": above})
    assert ex.acct.orders[r["orderId"]].status == "EXPIRED"
    assert events[-1]["o"]["x"] == "EXPIRED" and events[-1]["o"]["f"] == "GTX"


def test_reduce_only_realised_pnl_and_rejections(market_args):
    m, ex, events = venue(market_args)
    advance(m, ex, 2)
    with pytest.raises(VenueError) as e:
        ex.new_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010",
                      "reduceOnly": "true"})
    assert e.value.code == -2022
    ex.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"})
    entry = ex.pos("BTCUSDT").entry
    advance(m, ex, 5)
    r = ex.new_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.020",
                      "reduceOnly": "true"})
    exit_px = ex.acct.orders[r["orderId"]].cumQuote / 0.01
    assert ex.pos("BTCUSDT").amt == 0  # capped at the position: never flips
    assert float(ex.acct.trades[-1]["realizedPnl"]) == pytest.approx(0.01 * (exit_px - entry))
    assert ex.acct.wallet == pytest.approx(25_000 + 0.01 * (exit_px - entry) - 0.01 * (entry + exit_px) * TAKER)
    for params, code in [({"symbol": "NOPEUSDT"}, -1121), ({"side": "BUY"}, -1102),
                         ({"quantity": "0.0001"}, -1111), ({"symbol": "ETHUSDT", "quantity": "0.001"}, -4164),
                         ({"quantity": "100"}, -2019), ({"type": "STOP_MARKET"}, -4120)]:
        p = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010", **params}
        if "side" in params:
            p.pop("quantity")
        with pytest.raises(VenueError) as e:
            ex.new_order(p)
        assert e.value.code == code, params
    with pytest.raises(VenueError) as e:
        ex.cancel("BTCUSDT", 123)
    assert e.value.code == -2011


def test_funding_charged_at_recorded_times_like_the_kernel(market_args):
    m, ex, events = venue(market_args)
    j = m.index["BTCUSDT"]
    funding_bars = np.flatnonzero(m.funding[m.start_index:, j]) + m.start_index
    f = int(funding_bars[funding_bars >= m.cur + 4][0])  # a funding time a few bars into the replay
    advance(m, ex, f - 3 - m.cur)
    ex.new_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.100"})  # held before F
    advance(m, ex, 2)  # now bar f-1 closed: the clock is at F
    ex.new_order({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "1.000"})  # opened at F
    wallet = ex.acct.wallet
    advance(m, ex, 1)  # bar f closes: funding of bar f
    rate = m.funding[f, j]
    assert rate != 0
    charged = -0.1 * rate * m.open[f, j]  # positionAmt x rate x open(F): a short receives a positive rate
    assert ex.acct.wallet - wallet == pytest.approx(-charged)
    fund = [e for e in events if e["e"] == "ACCOUNT_UPDATE" and e["a"]["m"] == "FUNDING_FEE"]
    assert len(fund) == 1 and fund[0]["E"] == int(m.open_time[f])  # ETH, opened at F, is not charged
    assert float(fund[0]["a"]["B"][0]["bc"]) == pytest.approx(-charged)


def test_snapshot_keeps_positions_across_a_restart(market_args, tmp_path):
    state = tmp_path / "venue.json"
    m, ex, _ = venue(market_args, state_file=state)
    advance(m, ex, 4)
    ex.new_order({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "2.000"})
    ex.new_order({"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1.000",
                  "price": "1000.00"})
    advance(m, ex, 2)
    m2, ex2, _ = venue(market_args, state_file=state)
    assert m2.cur == m.cur and ex2.acct.wallet == pytest.approx(ex.acct.wallet)
    assert ex2.pos("ETHUSDT").amt == 2.0 and ex2.pos("ETHUSDT").entry == pytest.approx(ex.pos("ETHUSDT").entry)
    assert [o.price for o in ex2.acct.orders.values() if o.is_open] == [1000.0]
