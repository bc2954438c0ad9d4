"""Validation records: hashing, fingerprints, atomic storage, lookup (dolphin.research.records)."""

import json
import os
import stat

import pytest

from dolphin.research.records import (RecordError, ValidationRecord, config_hash, data_fingerprint, find_records,
                                      latest_passing, load_record, save_record)
from tests.support.data import set_dir

SET = set_dir("usdtm-5m-2023")


def _rec(params, passed=True, fp="ab" * 32, created="2026-01-01T00:00:00+00:00", leg="short"):
    return ValidationRecord(leg=leg, data_fingerprint=fp, data_set="usdtm-5m-2023", config_hash=config_hash(params),
                            params=dict(params), code_version="test", passed=passed, created_at=created,
                            gate={"pf": {"value": 1.1, "threshold": 1.05, "passed": True}},
                            results={"roi": 0.01, "nan": float("nan")})


def test_config_hash_is_order_independent_and_value_sensitive():
    a = config_hash({"x": 1.0, "y": [1, 2], "z": {"b": 1, "a": 2}})
    assert a == config_hash({"z": {"a": 2, "b": 1}, "y": (1, 2), "x": 1.0})
    assert a != config_hash({"x": 1.0000000001, "y": [1, 2], "z": {"b": 1, "a": 2}})
    assert len(a) == 64
    with pytest.raises(RecordError):
        config_hash({"f": object()})


def test_data_fingerprint_real_set_window_and_content(tmp_path):
    whole = data_fingerprint(SET, content=False)
    assert whole == data_fingerprint(SET, content=False)
    assert whole != data_fingerprint(SET, "2023-07-05", "2023-07-20", content=False)
    assert data_fingerprint(SET, "2023-07-05", "2023-07-20", content=False) != data_fingerprint(
        SET, "2023-07-05", "2023-07-21", content=False)
    f = tmp_path / "A.parquet"
    f.write_bytes(b"x" * 10)
    one = data_fingerprint(tmp_path)
    f.write_bytes(b"y" * 10)  # same name and size, other content
    assert data_fingerprint(tmp_path) != one
    with pytest.raises(RecordError, match="does not exist"):
        data_fingerprint(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecordError, match="no data files"):
        data_fingerprint(empty)


def test_record_round_trip_save_find_latest(tmp_path):
    params = {"vel_div_threshold": 0.02, "tp_bps": 95.0}
    old = _rec(params, passed=True, created="2026-01-01T00:00:00+00:00")
    p = save_record(old, tmp_path)
    assert p.name == f"short-{config_hash(params)}-{'ab' * 6}.json"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    back = load_record(p)
    assert back.params == params and back.passed and back.gate == old.gate
    assert back.results["roi"] == 0.01 and back.results["nan"] != back.results["nan"]  # NaN survives
    newer_fail = _rec(params, passed=False, fp="cd" * 32, created="2026-02-01T00:00:00+00:00")
    save_record(newer_fail, tmp_path)
    found = find_records(params, "short", tmp_path)
    assert [r.created_at for r in found] == ["2026-02-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]
    assert latest_passing(params, "short", tmp_path).data_fingerprint == "ab" * 32
    assert latest_passing(params, "long", tmp_path) is None
    assert latest_passing({"other": 1}, "short", tmp_path) is None
    assert not list((tmp_path / "validation").glob(".tmp-*"))


def test_damaged_record_is_ignored_not_trusted(tmp_path, caplog):
    params = {"a": 1}
    p = save_record(_rec(params), tmp_path)
    p.write_text(p.read_text()[:40])  # truncated
    assert find_records(params, "short", tmp_path) == []
    assert "unreadable" in caplog.text and p.name in caplog.text
    doc = json.loads(_rec(params).to_json())
    del doc["gate"]
    with pytest.raises(RecordError, match="lacks"):
        ValidationRecord.from_json(json.dumps(doc))
    with pytest.raises(RecordError, match="leg"):
        _rec(params, leg="both")
