"""DolphinStrategy pieces that the replay parity cannot reach: bar-set assembly on an imperfect feed."""

import numpy as np

from dolphin.scanner import scan
from runtime.risk import DefaultRiskSource, RiskSnapshot, ScheduledRiskSource
from tests.support.engine import real_panel
from tests.support.runtime import MS, _bar, _strategy

def test_bar_sets_are_assembled_per_timestamp_and_scanned_like_batch():
    panel = real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=200)
    s = _strategy(panel)
    order = np.random.default_rng(3)
    for t in range(panel.n_bars):
        for j in order.permutation(3):  # arrival order within a timestamp does not matter
            # Binance stamps a kline at close - 1 ms; the replay at the close: both are that bar
            s.on_bar(_bar(panel, j, t, close_offset_ms=-1 if j == 1 else 0))
        assert s.log_data.close_ms[-1] == panel.close_time[t]  # decided as soon as the set completed
    batch = scan(panel, int(panel.open_time[0]))
    assert np.array_equal(np.asarray(s.log_data.vel_div), batch.vel_div / 3, equal_nan=True)
    assert s.log_data.incomplete_bars == 0


def test_missing_bar_is_forward_filled_late_bar_dropped_gap_restarts_cold():
    panel = real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=120)
    s = _strategy(panel)
    for t in range(100):
        for j in range(3):
            if (t, j) != (50, 1):
                s.on_bar(_bar(panel, j, t))
        if t == 51:
            s.on_bar(_bar(panel, 1, 50))  # ETH's bar 50 turns up late: already decided, dropped
    assert s.log_data.incomplete_bars == 1
    assert s.log_data.close_ms == [int(x) for x in panel.close_time[:100]]
    ffilled = panel.close.copy()
    ffilled[50, 1] = ffilled[49, 1]
    panel.close[:] = ffilled
    batch = scan(panel, int(panel.open_time[0]))
    assert np.array_equal(np.asarray(s.log_data.vel_div), batch.vel_div[:100] / 3, equal_nan=True)
    # a lost stretch of bars: the scanner restarts instead of mixing bars across the gap
    for j in range(3):
        s.on_bar(_bar(panel, j, 110))
    assert s.log_data.close_ms[-1] == panel.close_time[110] and np.isnan(s.log_data.vel_div[-1])
    assert not s.log_data.vol_ok[-1]


def test_risk_sources():
    snap = DefaultRiskSource().read(0)
    assert (snap.posture, snap.rm, snap.acb_boost, snap.mc_status) == (0, 1.0, 1.0, 0)
    from dolphin.engine.inputs import RiskInputs

    ct = np.array([300_000, 600_000])
    r = RiskInputs.defaults(2)
    r.posture[1], r.rm[1] = 2, 0.25
    src = ScheduledRiskSource(ct, r)
    assert src.read(600_000 * MS) == RiskSnapshot(2, 0.25, 1.0, 0, r.source)
    try:
        src.read(900_000 * MS)
    except KeyError:
        pass
    else:
        raise AssertionError("a bar close outside the schedule must not silently default")


def test_replay_instruments_hold_every_recorded_price_exactly():
    from decimal import Decimal

    from nautilus_trader.model.objects import Price

    from runtime.instruments import instruments_for_panel, make_perpetual, to_float

    panel = real_panel(("BTCUSDT", "PEPEUSDT", "1000SATSUSDT"), start=0, n=2000)
    inst = instruments_for_panel(panel)
    for j, s in enumerate(panel.symbols):
        i = inst[s]
        assert str(i.id) == f"{s}-PERP.BINANCE" and i.quote_currency.code == "USDT" and not i.is_inverse
        assert (i.maker_fee, i.taker_fee) == (Decimal("0.0002"), Decimal("0.0005"))
        assert i.margin_maint == Decimal("0.004") and i.margin_init == Decimal(1) / Decimal(6)
        c = np.unique(panel.close[:, j])
        back = np.array([to_float(Price(x, i.price_precision)) for x in c])
        assert np.array_equal(back, c)  # what the live scanner sees is the recorded float, bit for bit
        # >= 10 significant digits at the smallest price: derived prices (TP, slippage) round by < 1e-10
        assert float(i.price_increment) / c.min() <= 1e-10
        assert float(i.size_increment) * panel.close[:, j].max() <= 1e-6
    # why to_float: Nautilus's as_double() is off by an ulp on many BTC prices
    btc = np.unique(panel.close[:, 0])
    assert any(Price(x, inst["BTCUSDT"].price_precision).as_double() != x for x in btc)
    assert make_perpetual("ETHUSDT").price_precision == 2  # sane defaults without data
