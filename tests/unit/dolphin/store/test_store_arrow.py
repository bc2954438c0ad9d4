"""scan_latest with its per-asset columns as Arrow IPC (dolphin.store.arrow_scan) through the real embedded
store: exact round trip of a real scan, the scalar fields existing readers use unchanged, malformed payloads
refused by name, and 400 asset_<SYMBOL>_ob keys beside it."""

import base64

import numpy as np
import pytest

from dolphin.scanner.core import scan
from dolphin.store import FEATURES, SCAN_LATEST, MalformedRecordError, Record, asset_ob_key, iso_utc, publish_if_newer
from dolphin.store.arrow_scan import FIELD, decode_scan, encode_scan, scan_arrays, scan_arrow_record
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.store.records import scan_is_newer, scan_record
from tests.support.engine import real_panel


@pytest.fixture(scope="module")
def real_scans():
    p = real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"), n=1000)
    return scan(p, int(p.open_time[0]))


def test_real_scan_round_trips_exactly_through_the_embedded_store(tmp_path, real_scans):
    s = real_scans
    rec = scan_arrow_record(s, -1, "test")
    with EmbeddedStore(tmp_path / "f.sqlite") as store:
        store.put(FEATURES, SCAN_LATEST, rec)
        got = store.get(FEATURES, SCAN_LATEST)
    assert got == rec
    a = scan_arrays(got)
    assert a.symbols == list(s.symbols) and a.windows == s.windows
    assert a.scan_time_ms == int(s.timestamp[-1])
    assert np.array_equal(a.close, s.close[-1])
    for k, w in enumerate(s.windows):
        assert np.array_equal(a.loadings[w], s.loadings[-1, k])
        assert a.lam[w] == float(s.lam[-1, k])
    assert a.vel_div == float(s.vel_div[-1])
    # the scalar fields every existing reader uses are scan_record's, unchanged
    base = scan_record(s, -1, "test")
    assert {k: v for k, v in got.value.items() if k in base.value} == base.value
    assert got.timestamp == base.timestamp


def test_newer_order_and_compare_and_set_unchanged(tmp_path, real_scans):
    older, newer = scan_arrow_record(real_scans, -2), scan_arrow_record(real_scans, -1)
    assert scan_is_newer(newer, older) and not scan_is_newer(older, newer)
    with EmbeddedStore(tmp_path / "f.sqlite") as store:
        assert publish_if_newer(store, FEATURES, SCAN_LATEST, newer, newer=scan_is_newer)
        assert not publish_if_newer(store, FEATURES, SCAN_LATEST, older, newer=scan_is_newer)
        assert scan_arrays(store.get(FEATURES, SCAN_LATEST)).scan_time_ms == int(real_scans.timestamp[-1])


def test_malformed_payloads_are_refused_by_name(real_scans):
    rec = scan_arrow_record(real_scans)
    with pytest.raises(MalformedRecordError, match="no Arrow payload"):
        scan_arrays(scan_record(real_scans))
    with pytest.raises(MalformedRecordError, match="not base64"):
        scan_arrays(Record({**rec.value, FIELD: "***"}, rec.timestamp))
    with pytest.raises(MalformedRecordError, match="not a valid scan"):
        scan_arrays(Record({**rec.value, FIELD: base64.b64encode(b"not arrow").decode()}, rec.timestamp))
    raw = encode_scan(real_scans, -1)
    with pytest.raises(MalformedRecordError, match="not a valid scan"):
        decode_scan(raw[: len(raw) // 2])  # truncated stream
    other = scan_arrow_record(real_scans, -2)
    with pytest.raises(MalformedRecordError, match="of scan"):  # payload of another scan than the record's
        scan_arrays(Record({**rec.value, FIELD: other.value[FIELD]}, rec.timestamp))


def test_decoded_columns_are_read_only_views(real_scans):
    a = decode_scan(encode_scan(real_scans))
    assert not a.close.flags.writeable
    with pytest.raises(ValueError):
        a.close[0] = 1.0


def test_four_hundred_order_book_keys(tmp_path):
    syms = [f"SYN{i:03d}USDT" for i in range(400)]
    with EmbeddedStore(tmp_path / "f.sqlite") as store:
        for i, s in enumerate(syms):
            store.put(FEATURES, asset_ob_key(s), Record({"imbalance": i / 400}, iso_utc(1_700_000_000_000)))
        keys = [k for k in store.keys(FEATURES) if k.startswith("asset_")]
        assert sorted(keys) == sorted(asset_ob_key(s) for s in syms)
        assert store.get(FEATURES, asset_ob_key("SYN399USDT")).value["imbalance"] == 399 / 400
