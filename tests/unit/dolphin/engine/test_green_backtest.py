"""`dolphin backtest --config green` on REAL data: BLUE and GREEN side by side, legs, arbiter weights, refusal."""

import numpy as np
import pytest

from dolphin.cli import main
from dolphin.engine.config import GREEN_CFG
from dolphin.engine.pipeline import run
from dolphin.timeutil import parse_time

START, END = "2024-08-01", "2024-08-20"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("green_home")  # one scan cache for the module

def test_cli_green_prints_blue_and_green_side_by_side(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOLPHIN_HOME", str(home))
    rep = tmp_path / "g.html"
    rc = main(["backtest", "--data", "spot-5m-2024", "--config", "green", "--start", START, "--end", END,
               "--report", str(rep)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "BLUE vs GREEN, out-of-sample:" in out and "BLUE vs GREEN, all:" in out
    lines = [ln for ln in out.splitlines() if ln.startswith(("BLUE ", "GREEN "))]
    blue = next(ln for ln in lines if ln.startswith("BLUE  "))
    green = next(ln for ln in lines if ln.startswith("GREEN (SHORT-only"))
    research = next(ln for ln in lines if ln.startswith("GREEN bidirectional (research, NOT deployable)"))
    # GREEN without a LONG record trades exactly BLUE's trades; the research column has LONG trades
    assert blue.split()[1:] == green.split()[green.split().index("validated)") + 1:]
    assert research.split()[-2] != "0"
    assert "arbiter (regime_weighted) w_long over" in out
    html = rep.read_text()
    assert "BLUE vs GREEN (legs, capital arbiter)" in html and "Capital arbiter (regime_weighted)" in html


def test_green_with_long_runs_the_arbiter_and_sizes_legs(home, monkeypatch):
    monkeypatch.setenv("DOLPHIN_HOME", str(home))
    cfg = GREEN_CFG.with_(long_enabled=True)  # programmatic research run: the load-time gate is for loaders
    r = run("spot-5m-2024", cfg, start_ms=parse_time(START), end_ms=parse_time(END))
    assert r.arbiter is not None and r.result.leg_weights is not None
    tr = r.result.trades
    assert (tr.side == 1).any() and (tr.side == -1).any()
    lw = r.result.leg_weights
    for t in tr[tr.entry_bar >= r.result.first_bar].itertuples():
        w = lw[t.entry_bar - 1, 0 if t.side < 0 else 1]  # weight of the scan that decided the entry
        assert t.notional == pytest.approx(t.capital_before * cfg.capital_fraction * w * t.leverage)
    assert np.allclose(lw.sum(axis=1), 1.0)


def test_cli_refuses_an_unvalidated_long_leg(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    y = tmp_path / "green_long.yaml"
    y.write_text("preset: green\nlong_enabled: true\n")
    rc = main(["backtest", "--data", "spot-5m-2024", "--config", str(y), "--start", START, "--end", END])
    err = capsys.readouterr().err
    assert rc == 1 and "no LONG validation record exists" in err
