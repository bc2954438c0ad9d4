"""mc_envelope as of the time it is for (issue 14): on a recorded source the envelope without an explicit
end day is computed for the capital chain's next day, from the days before it only, and stamped at that day's
00:00 -- never on the data's last days while the chain is still early. Real spot-5m-2024 data."""

from datetime import datetime, timezone

import pytest

import dagster as dg
from tests.support.dagster import dagster_env, failure_text

CHAIN_LAST = "2024-03-14"  # the ledger's last day: the envelope is for 2024-03-15
FOR_DAY = "2024-03-15"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("dolphin_home")
    with dagster_env(home, unset=("DOLPHIN_WAREHOUSE", "DOLPHIN_FEATURE_STORE")):
        from dolphin_assets.definitions import ASSET_CHECKS, ASSETS, resources

        instance = dg.DagsterInstance.get()
        yield {"home": home, "instance": instance, "res": resources(), "assets": [*ASSETS, *ASSET_CHECKS]}
        instance.dispose()


def test_default_end_day_follows_the_chain_not_the_data_end():
    from dolphin_assets.assets.risk import default_end_day
    from dolphin_assets.settings import SETTINGS

    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert SETTINGS.end is not None  # the dev code location is a recorded set
    assert default_end_day(now, CHAIN_LAST) == FOR_DAY
    assert default_end_day(now, None) == SETTINGS.start  # no day yet: the chain's first day
    assert default_end_day(now, "2099-01-01") == SETTINGS.end_exclusive  # never past the data


def test_envelope_for_the_chains_next_day_is_stamped_then_and_uses_only_earlier_days(world):
    from dolphin.timeutil import day_start_ms
    from dolphin.data import load_panel
    from dolphin.engine.state import EngineState
    from dolphin.ledger import CapitalLedger, DayRecord
    from dolphin.mc.forewarner import MCConfig, MCEnvelope, forewarn
    from dolphin.mc.variants import engine_daily_variants, history_bars
    from dolphin.scanner import scan
    from dolphin.store import FEATURES, MC_FOREWARNER_LATEST
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin_assets.settings import ENGINE_CONFIG, SETTINGS, STRATEGY

    # the chain has run up to CHAIN_LAST (a ledger row is all the envelope reads of it)
    book = CapitalLedger(world["home"] / "ledger" / "ledger.sqlite")
    s0 = EngineState.fresh(25_000.0).to_dict()
    book.record_day(STRATEGY, CHAIN_LAST, DayRecord(25_000.0, 25_000.0, 25_000.0, s0, s0, [], 288),
                    start_day=CHAIN_LAST)
    cfg = {"lookback_days": 20, "n_variants": 2, "n_paths": 1000}
    r = dg.materialize(world["assets"], selection=dg.AssetSelection.assets("mc_envelope"), resources=world["res"],
                       instance=world["instance"], raise_on_error=False,
                       run_config={"ops": {"mc_envelope": {"config": cfg}}})
    assert r.success, failure_text(r)
    with EmbeddedStore(world["home"] / "store" / "features.sqlite") as st:
        rec = st.get(FEATURES, MC_FOREWARNER_LATEST)
    assert rec.timestamp == f"{FOR_DAY}T00:00:00.000Z"  # as of the day it is for, not "now"
    assert rec.value["window_end_exclusive"] == FOR_DAY and FOR_DAY < SETTINGS.end
    # truncation: the same envelope from data that stops before FOR_DAY (nothing later was read)
    end = day_start_ms(FOR_DAY)
    p = load_panel(SETTINGS.data, start_ms=end - 20 * 86_400_000, end_ms=end - 1,
                   warmup_bars=history_bars(ENGINE_CONFIG))
    m, names = engine_daily_variants(p, scan(p, int(p.open_time[0])), ENGINE_CONFIG, end_day=FOR_DAY,
                                     lookback_days=20, n_variants=2, seed=20240601)
    ref = forewarn(m, MCConfig(n_paths=1000, seed=20240601), as_of=end, variant_names=names)
    assert MCEnvelope.from_record(rec).to_record() == ref.to_record()
