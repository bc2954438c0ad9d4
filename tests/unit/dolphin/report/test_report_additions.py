"""Backtest report additions (issue 14): exit-reason mix with liquidations/stops at the top, per-asset table,
leverage/exposure chart, prices at the instrument's precision, 0644 files, the config hash in the file name.
Real usdtm-5m-2023 runs."""

import os
import re
import stat

import pytest

from dolphin.cli import main
from dolphin.engine import pipeline
from dolphin.engine.config import BLUE
from dolphin.engine.report_data import price_decimals, report_data
from dolphin.report import write_report
from dolphin.research.records import config_hash

SET = "usdtm-5m-2023"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_report_has_exit_mix_assets_leverage_and_instrument_prices(cache, tmp_path):
    cfg = BLUE.with_(max_leverage=60.0, abs_max_leverage=60.0, max_trade_loss=0.01)  # stops, maybe liquidations
    r = pipeline.run(SET, cfg, cache_dir=cache)
    tr = r.periods["All"]["trades"]
    assert (tr.exit_reason == "stop_loss").any()
    html = write_report(report_data(r, "t"), tmp_path / "r.html").read_text()
    alert = re.search(r'id="exit-alert">([^<]*)<', html).group(1)
    n_stop = int((tr.exit_reason == "stop_loss").sum())
    assert f"{n_stop} stop-loss exit(s)" in alert
    assert html.index('id="exit-alert"') < html.index('id="metrics"')  # at the top
    for reason, n in tr.exit_reason.value_counts().items():
        assert re.search(rf'<td class="l">{reason}</td><td>{n:,}</td>', html)
    assert 'id="assets"' in html and "Leverage held" in html
    dec = price_decimals(r.panel, set(tr.asset))
    row = tr.iloc[0]
    assert f"<td>{row.entry_price:,.{dec[row.asset]}f}</td>" in html
    assert stat.S_IMODE(os.stat(tmp_path / "r.html").st_mode) == 0o644


def test_price_decimals_read_off_the_candles(cache):
    r = pipeline.run(SET, BLUE, cache_dir=cache, split=None)
    d = price_decimals(r.panel, ["BTCUSDT", "ETHUSDT"])
    i = list(r.panel.symbols).index("BTCUSDT")
    c = r.panel.close[:, i]
    assert d["BTCUSDT"] <= 2 and all(abs(x * 10 ** d["BTCUSDT"] - round(x * 10 ** d["BTCUSDT"])) < 1e-6 for x in c[:500])


def test_default_report_name_carries_the_config_hash(home, capsys):
    assert main(["backtest", "--data", SET]) == 0
    out = capsys.readouterr().out
    path = re.search(r"report: (\S+)", out).group(1)
    assert path.endswith(f"_blue_{config_hash(BLUE.to_dict())[:8]}.html")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
