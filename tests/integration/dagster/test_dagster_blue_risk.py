"""The BLUE daily chain in Dagster under the risk layer (default ``risk_layer: full``) on real data
(spot-5m-2024, 3 days in April 2024 when the MC envelope has its 60 days): the lineage shows exf / esof /
acb_state / mc_envelope feeding daily_pnl_blue; the risk state (posture controller, Cat5 rolling peak) is
carried through the capital ledger, so the chained days equal ONE long risk backtest over the same days with
the same inputs; a re-run of a day is idempotent; ``risk_layer: none`` runs the plain engine for comparison
and cannot continue a full chain.
"""

import numpy as np
import pandas as pd
import pytest

import dagster as dg
from tests.support.dagster import dagster_env, failure_text

HISTORY = [f"2024-04-{d:02d}" for d in range(14, 22)]  # the 8 days of scans the first chain day reads
DAYS = ["2024-04-22", "2024-04-23", "2024-04-24"]
COLS = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price", "fees",
        "funding", "pnl", "exit_reason"]


def _layer(name):
    return {"ops": {"daily_pnl_blue": {"config": {"risk_layer": name}}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("dolphin_home")
    with dagster_env(home):
        from dolphin_assets.definitions import ASSETS, resources
        from dolphin_assets.resources.ledger import Ledger

        instance = dg.DagsterInstance.get()
        res = resources(ledger=Ledger(start_day=DAYS[0]))
        w = {"home": home, "meta": {}, "res": res}

        def mat(day, selection, run_config=None, resources_=None):
            return dg.materialize(ASSETS, selection=selection, partition_key=day, resources=resources_ or res,
                                  instance=instance, run_config=run_config or {}, raise_on_error=False)

        w["mat"] = mat
        for d in HISTORY:
            r = mat(d, dg.AssetSelection.assets("market_bars", "eigen_scans"))
            assert r.success, failure_text(r)
        # the chain without its checks (tests/integration/dagster/test_dagster_checks.py covers them)
        chain = dg.AssetSelection.assets("market_bars", "eigen_scans", "vol_regime", "daily_pnl_blue", "trades_blue",
                                         "capital_ledger_blue").without_checks()
        w["chain"] = chain
        for d in DAYS:
            r = mat(d, chain)  # default run config: risk_layer full
            assert r.success, failure_text(r)
            mats = {m.asset_key.to_user_string(): m for m in r.get_asset_materialization_events()}
            w["meta"][d] = {k: v.event_specific_data.materialization.metadata for k, v in mats.items()}
        w["reference"] = _long_run(home)
        yield w
        instance.dispose()


def _long_run(home):
    """The same days as ONE risk backtest with the same inputs: the ACB state of each day (the acb_state
    asset's computation) followed by its scans, the envelopes for each day and the next (the mc_envelope
    asset's computation), the recorded ExF history for DVOL."""
    from dolphin.daily import day_boost, history_bars
    from dolphin.timeutil import day_start_ms
    from dolphin.data import load_panel
    from dolphin.engine.risklayer import RiskLayers, run_risk_backtest
    from dolphin.scanner import scan
    from dolphin.timeutil import DAY_MS, day_str
    from dolphin_assets.assets.risk import MCEnvelopeConfig, acb_for_day, envelope_for
    from dolphin_assets.resources.exf_source import ExfSource
    from dolphin_assets.resources.market_data import MarketData
    from dolphin_assets.resources.scan_dir import ScanDir
    from dolphin_assets.settings import ENGINE_CONFIG

    cfg, src, sd = ENGINE_CONFIG, ExfSource(), ScanDir().dir()
    p = load_panel("spot-5m-2024", start_ms=day_start_ms(DAYS[0]), end_ms=day_start_ms(DAYS[-1]) + DAY_MS - 1,
                   warmup_bars=history_bars(cfg))
    scans = scan(p, int(p.open_time[0]))
    boost = np.ones(p.n_bars)
    envs = {}
    for d in DAYS:
        a = int(np.searchsorted(p.open_time, day_start_ms(d)))
        b = a + DAY_MS // p.bar_ms
        boost[a:b] = day_boost(acb_for_day(src, sd, d), scans[a:b], 0, 1.0)
        for e in (day_start_ms(d), day_start_ms(d) + DAY_MS):
            envs[e] = envelope_for(MarketData(), sd, day_str(e), MCEnvelopeConfig())[0]
    rr = run_risk_backtest(p, scans, cfg, layers=RiskLayers.preset("full"), exf=src.history(),
                           trade_from_ms=int(p.close_time[p.warmup_bars]), close_at_end=False, mc_envelopes=envs,
                           boost=boost)
    return p, rr


def _ledger(world):
    from dolphin.ledger import CapitalLedger

    return CapitalLedger(world["home"] / "ledger" / "ledger.sqlite")


def test_lineage_risk_inputs_feed_daily_pnl_blue():
    from dolphin_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("daily_pnl_blue")).parent_keys}
    assert {"exf", "esof", "acb_state", "mc_envelope", "market_bars", "eigen_scans", "vol_regime"} <= parents


def test_chained_days_equal_one_long_risk_backtest(world):
    panel, ref = world["reference"]
    cur = _ledger(world).current("BLUE")
    assert [e.day for e in cur] == DAYS
    ends = [int(np.searchsorted(panel.open_time, int(pd.Timestamp(d, tz="UTC").value // 10**6))) + 287 for d in DAYS]
    assert [e.record.closing_equity for e in cur] == [float(ref.result.equity[i]) for i in ends]
    chained = pd.DataFrame([t for e in cur for t in e.record.trades])
    if len(ref.result.trades):
        pd.testing.assert_frame_equal(chained[COLS].reset_index(drop=True),
                                      ref.result.trades[COLS].reset_index(drop=True), check_dtype=False)
    else:
        assert chained.empty
    # the risk state is in the ledger and equals the long run's at the last close
    carry = cur[-1].record.closing_state["extra"]["risk"]
    assert carry["controller"]["posture"] == ref.carry["controller"]["posture"]
    assert carry["posture"] == ref.carry["posture"] and carry["rm"] == ref.carry["rm"]
    assert carry["peak"]["samples"] == [[t, e] for t, e in ref.carry["peak"]["samples"]]
    # the run did go through the layer: the posture left APEX (no order-book history: Cat3 = 0.5)
    assert (ref.posture[panel.warmup_bars:] != 0).any()
    for e in cur[1:]:
        assert e.record.opening_state["extra"]["risk"], "each day opens with the previous day's risk state"


def test_metadata_names_the_risk_inputs(world):
    for d in DAYS:
        md = world["meta"][d]["daily_pnl_blue"]
        assert md["risk_layer"].value == "full"
        text = md["risk_inputs"].value
        for s in ("ACB: acb_state " + d, "MC: envelope for " + d, "Cat4: DVOL from the recorded ExF history",
                  "Cat5: the chain's own", "posture at the close", "EsoF: advisory"):
            assert s in text, (s, text)
        assert "risk layer: ACB boost" in md["engine_inputs"].value
    assert "carried from " + DAYS[0] in world["meta"][DAYS[1]]["daily_pnl_blue"]["risk_inputs"].value


def test_rerun_is_idempotent_and_a_full_chain_refuses_none(world):
    book = _ledger(world)
    before = [(e.day, e.record.fingerprint()) for e in book.current("BLUE")]
    r = world["mat"](DAYS[1], world["chain"])
    assert r.success, failure_text(r)
    # the same result again (a new version with the same fingerprint; the later day stays current)
    assert [(e.day, e.record.fingerprint()) for e in book.current("BLUE")] == before
    assert [e.version for e in book.history("BLUE", DAYS[1])] == [1, 2]
    r = world["mat"](DAYS[2], world["chain"], _layer("none"))
    assert not r.success and "keeps one risk layer" in failure_text(r)
    r = world["mat"](DAYS[2], world["chain"], _layer("sideways"))
    assert not r.success and "risk_layer 'sideways'" in failure_text(r)


def test_risk_layer_none_runs_the_plain_engine_for_comparison(world, tmp_path):
    from dolphin.daily import history_bars
    from dolphin.timeutil import day_start_ms
    from dolphin.data import load_panel
    from dolphin.engine.backtest import run_backtest
    from dolphin.scanner import scan
    from dolphin_assets.definitions import resources
    from dolphin_assets.resources.ledger import Ledger
    from dolphin_assets.settings import ENGINE_CONFIG

    res = resources(ledger=Ledger(start_day=DAYS[0], path=str(tmp_path / "none.sqlite")))
    r = world["mat"](DAYS[0], world["chain"], _layer("none"), res)
    assert r.success, failure_text(r)
    md = {m.asset_key.to_user_string(): m for m in r.get_asset_materialization_events()}
    meta = md["daily_pnl_blue"].event_specific_data.materialization.metadata
    assert meta["risk_layer"].value == "none" and "none: APEX, MC GREEN" in meta["risk_inputs"].value
    p = load_panel("spot-5m-2024", start_ms=day_start_ms(DAYS[0]), end_ms=day_start_ms(DAYS[0]) + 86_400_000 - 1,
                   warmup_bars=history_bars(ENGINE_CONFIG))
    plain = run_backtest(p, scan(p, int(p.open_time[0])), ENGINE_CONFIG, trade_from_ms=int(p.close_time[p.warmup_bars]),
                         close_at_end=False)
    from dolphin.ledger import CapitalLedger

    e = CapitalLedger(tmp_path / "none.sqlite").entry("BLUE", DAYS[0])
    assert e.record.closing_equity == float(plain.equity[-1])
