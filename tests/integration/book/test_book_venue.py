"""`dolphin book` as a real process against the local venue (`dolphin venue`, synthetic depth) on loopback:
every asset published with the venue's event time and in range, a symbol the venue does not list reported by
name, the features recorded as Parquet under the data home, SIGTERM -> exit 0."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest

from dolphin.store import FEATURES
from dolphin.adapters.store_factory import open_store
from runtime.risk import _parse_book
from tests.support.venue import REPO, VenueProcess

pytestmark = pytest.mark.timeout(120)
SYMS = ["BTCUSDT", "ETHUSDT", "DOGEUSDT"]


def test_dolphin_book_process_against_the_venue(home):
    venue = VenueProcess("--speed", "0.25", "--symbols", ",".join(SYMS), "--days", "1", "--history-bars", "10")
    env = dict(os.environ, DOLPHIN_HOME=str(home), PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    book = subprocess.Popen([sys.executable, "-m", "dolphin.cli", "book", "--symbols", ",".join(SYMS + ["NOSUCHUSDT"]),
                             "--ws-url", venue.ws, "--http-url", venue.http, "--record-every-s", "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = open_store("embedded")
    try:
        deadline = time.monotonic() + 60
        recs = {}
        while time.monotonic() < deadline and book.poll() is None:
            recs = {s: store.get(FEATURES, f"asset_{s}_ob") for s in SYMS}
            if all(r is not None and r.value["update_id"] >= 3 for r in recs.values()):
                break
            time.sleep(0.1)
        assert book.poll() is None, book.stderr.read()[-3000:]
        for s, r in recs.items():
            assert r is not None, f"{s} never published"
            v = r.value
            assert v["symbol"] == s and v["synthetic"] is True and v["source"] == "binance-usdm depth20@500ms"
            assert -1 <= v["imbalance"] <= 1 and 0 <= v["depth_quality"] <= 1 and 0 <= v["fill_prob"] <= 1
            assert -1 <= v["agreement"] <= 1 and v["bid_notional"] > 0 and v["ask_notional"] > 0
            assert v["event_time_ms"] < v["receive_time_ms"]  # the venue's replay clock is in the past
            dq, fp, ts = _parse_book(r)
            assert ts == v["receive_time_ms"] and abs(time.time() * 1000 - ts) < 30_000  # fresh for the runtime
        book.send_signal(signal.SIGTERM)
        rc = book.wait(30)
        err = book.stderr.read()
        assert rc == 0, err[-3000:]
        assert "NOSUCHUSDT: not listed in exchangeInfo" in err
        assert "order-book publisher stopped:" in err and "Traceback" not in err
        rows = ds.dataset(home / "book", format="parquet").to_table().to_pylist()
        assert {r["symbol"] for r in rows} == set(SYMS) and all(r["synthetic"] for r in rows)
    finally:
        if book.poll() is None:
            book.kill()
            book.wait()
        store.close()
        rc, log = venue.stop()
        assert rc == 0, log[-2000:]
