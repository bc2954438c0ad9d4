"""NautilusTrader's real Binance USD-M data and execution clients against `dolphin venue`, by configuration
only (base URLs + API keys): bars arrive on /market, a market order fills and the position is there.

Needs nautilus_trader >= 1.226 (the first release with Binance's routed /market /public /private URLs);
run it with the Python 3.12 environment until the 3.12 merge, e.g.
    PYTHONPATH=$PWD /work/py312/.venv/bin/python -m pytest tests/integration/venue/test_venue_nautilus.py
"""

import json
import os
import subprocess
import sys

import pytest

from tests.support.venue import KEY, REPO, SECRET, VenueProcess

nautilus = pytest.importorskip("nautilus_trader", reason="nautilus_trader is not installed")
_version = tuple(int(x) for x in nautilus.__version__.split(".")[:2])
pytestmark = pytest.mark.skipif(
    _version < (1, 226),
    reason=f"nautilus_trader {nautilus.__version__} predates the routed Binance USD-M WebSocket URLs "
           "(needs >= 1.226, Python 3.12)")


def test_nautilus_binance_clients_trade_on_the_venue():
    venue = VenueProcess("--speed", "0.5", "--symbols", "BTCUSDT,ETHUSDT", "--days", "1")
    try:
        env = dict(os.environ, DOLPHIN_VENUE_API_KEY=KEY, DOLPHIN_VENUE_API_SECRET=SECRET)
        r = subprocess.run([sys.executable, str(REPO / "tests" / "support" / "venue_nautilus_node.py"), str(venue.port), "25"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    finally:
        _, venue_log = venue.stop()
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"node printed no result\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    out = json.loads(lines[-1][7:])
    assert len(out["bars"]) >= 3, out
    times = [b[0] for b in out["bars"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(b - a == 300_000 for a, b in zip(times, times[1:]))  # consecutive 5m bars, none skipped
    assert out["fills"], out
    assert out["fills"][0]["qty"] == "0.010"
    # the backtest's market-order rule on the real candle: the next bar's open + 2 bps slippage, on the tick
    import pyarrow.parquet as pq
    from dolphin.paths import data_root

    rows = pq.read_table(data_root() / "klines" / "usdtm-5m-2023" / "BTCUSDT.parquet").to_pylist()
    opens = {int(r["open_time"].timestamp() * 1000): r["open"] for r in rows}
    expected = round(opens[out["bars"][0][0] + 1] * 1.0002, 1)
    assert float(out["fills"][0]["px"]) == pytest.approx(expected)
    assert "OrderAccepted" in out["events"] and "OrderFilled" in out["events"]
    assert out["positions"] == [{"instrument": "BTCUSDT-PERP.BINANCE", "qty": "0.01"}]
    assert "ws connect /market/stream" in venue_log and "ws connect /private/ws" in venue_log
    assert KEY not in venue_log and SECRET not in venue_log
