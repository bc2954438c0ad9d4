"""The LONG gate: walk-forward LONG-leg validation on REAL data, its records, and the load-time refusal."""

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.config import BLUE, GREEN_CFG, load_config
from dolphin.engine.pipeline import scans_cached
from dolphin.paths import resolve_kline_set
from dolphin.research.long_gate import (GATE, LongGateError, calibrate_long, gate_verdict, long_leg_params,
                                        require_long_validation, validate_long)
from dolphin.research.records import ValidationRecord, config_hash, find_records, save_record

SET = "usdtm-5m-2023"  # the shortest real set: a fast walk-forward (it can never pass the multi-year rule)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    path = resolve_kline_set(SET)
    panel = load_panel(path)
    scans, _ = scans_cached(path, panel, cache_dir=tmp_path_factory.mktemp("scans"))
    return path, panel, scans


def test_gate_verdict_uses_the_seed_thresholds_strictly():
    ok = {"profit_factor": 1.06, "win_rate": 0.41, "roi": 0.01, "max_drawdown": 0.29, "trades": 101.0}
    gate, passed = gate_verdict(ok, 800)
    assert passed and set(gate) == set(GATE) | {"data_days"}
    for k, v in (("profit_factor", 1.05), ("win_rate", 0.40), ("roi", 0.0), ("max_drawdown", 0.30),
                 ("trades", 100.0), ("profit_factor", float("nan"))):
        g, p = gate_verdict({**ok, k: v}, 800)
        assert not p and not g[k]["passed"], k
    g, p = gate_verdict(ok, 729)  # not multi-year
    assert not p and not g["data_days"]["passed"]


def test_walk_forward_on_real_data_is_out_of_sample_and_stored(real, tmp_path):
    path, panel, scans = real
    v = validate_long(SET, GREEN_CFG, home=tmp_path, panel=panel, scans=scans, path=path)
    f = v.folds
    assert len(f) >= 3
    # every test window starts the day after its training window and the test windows tile without overlap
    for a, b in zip(f.itertuples(), list(f.itertuples())[1:]):
        assert a.test.split("..")[1] < b.test.split("..")[0]
    assert all(r.train.split("..")[1] < r.test.split("..")[0] for r in f.itertuples())
    assert (v.oos_trades.side == 1).all() and len(v.oos_trades) == f.test_trades.sum()
    assert v.oos_trades.entry_time.min() >= v.oos_ts[0] - panel.bar_ms
    rec = v.record
    assert rec.leg == "long" and rec.data_set == SET and not rec.passed  # 29 days: never multi-year
    assert rec.gate["data_days"]["passed"] is False
    assert rec.gate["trades"]["value"] == len(v.oos_trades)
    assert rec.params == long_leg_params(v.final_config) and rec.config_hash == config_hash(rec.params)
    assert find_records(rec.params, "long", tmp_path)[0].to_json() == rec.to_json()
    # deterministic
    again = validate_long(SET, GREEN_CFG, home=tmp_path, panel=panel, scans=scans, path=path, save=False)
    assert again.folds.equals(v.folds)


def test_long_calibration_reads_nothing_after_its_window(real):
    """Truncation: the thresholds chosen on [lo, hi) are the same when every bar from hi on is gone."""
    _, panel, scans = real
    lo, hi = 2000, 5000
    a, ga = calibrate_long(panel, scans, GREEN_CFG, lo, hi)
    b, gb = calibrate_long(panel.slice_bars(0, hi), scans[0:hi], GREEN_CFG, lo, hi)
    assert a == b and ga.equals(gb)
    assert (ga.long_entry_threshold > 0).all()


def _record(cfg, passed, home, *, note):
    params = long_leg_params(cfg)
    gate = {k: {"value": 1.0, "threshold": f"{op} {t}", "passed": passed} for k, (op, t) in GATE.items()}
    rec = ValidationRecord(leg="long", data_fingerprint="TEST-ONLY-" + "0" * 20, data_set=note,
                           config_hash=config_hash(params), params=params, code_version="test",
                           gate=gate, passed=passed, results={"note": note})
    save_record(rec, home)
    return rec


def test_long_leg_is_refused_without_a_passing_record(tmp_path):
    green_long = GREEN_CFG.with_(long_enabled=True)
    require_long_validation(BLUE, tmp_path)  # SHORT-only: nothing needed
    require_long_validation(GREEN_CFG, tmp_path)  # GREEN preset: LONG leg off
    with pytest.raises(LongGateError, match="no LONG validation record exists.*config hash"):
        require_long_validation(green_long, tmp_path)
    _record(green_long, False, tmp_path, note="TEST-ONLY failing record")
    with pytest.raises(LongGateError, match="failed: long-.*profit_factor 1 \\(needs > 1.05\\)"):
        require_long_validation(green_long, tmp_path)
    # a passing record for other LONG parameters does not count
    _record(green_long.with_(long_entry_threshold=0.021), True, tmp_path, note="TEST-ONLY other params")
    with pytest.raises(LongGateError):
        require_long_validation(green_long, tmp_path)
    _record(green_long, True, tmp_path, note="TEST-ONLY passing record")
    require_long_validation(green_long, tmp_path)
    # the SHORT thresholds and the arbiter are not LONG parameters
    require_long_validation(green_long.with_(entry_threshold=0.05, extreme_threshold=0.1, arbiter="equal_weight"),
                            tmp_path)


def test_load_config_refuses_an_unvalidated_long_leg(tmp_path, monkeypatch):
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    y = tmp_path / "g.yaml"
    y.write_text("preset: green\nlong_enabled: true\n")
    with pytest.raises(LongGateError, match="no LONG validation record"):
        load_config(str(y))
    assert not load_config("green").long_active


@pytest.mark.parametrize("argv", [
    ["runtime", "paper", "--data", "spot-5m-2024", "--start", "2024-02-01", "--end", "2024-02-02"],
    ["runtime", "sandbox"],
])
def test_runtime_commands_refuse_an_unvalidated_long_leg(tmp_path, monkeypatch, capsys, argv):
    from dolphin.cli import main

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    y = tmp_path / "g.yaml"
    y.write_text("preset: green\nlong_enabled: true\n")
    try:  # the CLI prints a ConfigError as one line (exit 1)
        rc, msg = main(argv + ["--config", str(y)]), capsys.readouterr().err
    except LongGateError as e:
        rc, msg = 1, str(e)
    assert rc == 1 and "no LONG validation record exists" in msg
