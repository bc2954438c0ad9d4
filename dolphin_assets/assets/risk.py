"""The risk layer's inputs: ExF, EsoF, ACB state (daily partitions) and the MC envelope (every 4 hours).

Dagster publishes what the runtime's survival stack reads (``exf_latest`` incl. ``dvol_btc``, ``esof_latest``,
``acb_state``, ``mc_forewarner_latest``); the runtime computes Rm / posture itself (DESIGN.md). Thin wrappers
over dolphin.exf, dolphin.esof, dolphin.acb and dolphin.mc.

Look-ahead: ``exf`` for day D is as of D 23:00 (recorded source) or now (live source, today's partition only);
``acb_state`` for D is as of D 00:00 (ExF knowable then, w750 daily values of the days before D only, read
from the scan Parquet files with bar open time < D 00:00); ``mc_envelope`` re-runs the engine over the
``lookback_days`` complete days before its end day (dolphin.mc.variants reads nothing at or after it); on a
recorded source that end day is the capital chain's next day and the record is stamped at its 00:00
(``default_end_day``), so a backfill never computes on, or publishes as fresh, days after the chain's.

MC fan-out: the variants run in one step (8 variants x 60 days take about a second on the dev set, less
than a step's start-up); the paths are vectorised numpy. At 400 assets the variant runs are the natural
unit to fan out as dynamic outputs.
"""

import math
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from dagster import (AssetDep, AssetExecutionContext, BetaWarning, Config, Failure, MaterializeResult, MetadataValue,
                     TimeWindowPartitionMapping, asset, define_asset_job)

from dolphin.acb import acb_daily, daily_w750, exf_inputs, publish_acb, DEFAULT as ACB_CONFIG
from dolphin.timeutil import day_start_ms
from dolphin.data.contracts import DataError
from dolphin.esof import esof_record
from dolphin.exf.indicators import INDICATOR_NAMES
from dolphin.mc.forewarner import MCConfig, forewarn
from dolphin.mc.variants import engine_daily_variants, history_bars as mc_history_bars
from dolphin.scanner import read_scans, scan
from dolphin.store import (ACB_STATE, ESOF_LATEST, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, Record, iso_utc,
                           publish_if_newer)
from dolphin.timeutil import DAY_MS, day_str
from dolphin_assets.assets.market import DAY_COLUMN, WAREHOUSE, day_column
from dolphin_assets.partitions import DAILY
from dolphin.rehydrate import keep_published
from dolphin.store.records import num
from dolphin_assets.publish import publish_or_gap
from dolphin_assets.resources.exf_source import ExfSource
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.resources.market_data import MarketData
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin_assets.settings import ENGINE_CONFIG, SETTINGS

HOUR_MS = 3_600_000
EXF_HOUR_UTC = 23  # the daily ExF snapshot (schedule and recorded as-of time)
MIN_EXF_INDICATORS = 4  # the exf asset check's floor

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # allow_nonexistent_upstream_partitions is beta in 1.13
    # acb_state(D) reads the w750 scans of the regime window before D and (live ExF) the exf rows of the
    # reference window before D -- never day D itself
    ACB_SCAN_DAYS = TimeWindowPartitionMapping(start_offset=-(ACB_CONFIG.regime_window_days + 1), end_offset=-1,
                                               allow_nonexistent_upstream_partitions=True)
    ACB_EXF_DAYS = TimeWindowPartitionMapping(start_offset=-ACB_CONFIG.exf_ref_days, end_offset=-1,
                                              allow_nonexistent_upstream_partitions=True)


def _missing_md(snap) -> str:
    return "\n".join(f"- {n}: {snap.reasons[n]}" for n in INDICATOR_NAMES if snap.values.get(n) is None) or "none"


# ---------------------------------------------------------------- ExF


@asset(partitions_def=DAILY, group_name="risk", io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
       description="External factors of the day (dolphin.exf): recorded history as of 23:00 UTC, or a live fetch "
                   "(today's partition only); one row of every indicator + non_null_count; publishes exf_latest.")
def exf(context: AssetExecutionContext, exf_source: ExfSource, feature_store: FeatureStoreResource) -> pd.DataFrame:
    day = context.partition_key
    as_of = day_start_ms(day) + EXF_HOUR_UTC * HOUR_MS
    if exf_source.kind == "live":
        today = day_str(int(datetime.now(timezone.utc).timestamp() * 1000))
        if day != today:
            # a live fetch only knows the present: labelling it with another day would be look-ahead (or stale)
            raise Failure(description=f"exf {day}: the live ExF source only serves today's partition ({today}); "
                                      f"backfill past days with ExfSource(kind='recorded')")
    snap = exf_source.snapshot(as_of)
    row = {n: (np.nan if snap.values.get(n) is None else float(snap.values[n])) for n in INDICATOR_NAMES}
    row.update(non_null_count=snap.non_null_count, as_of=snap.timestamp, source=exf_source.kind)
    df = pd.DataFrame([row])
    df.insert(0, "day", day_column(context, 1))
    rec = snap.to_store_record()
    published, gap = publish_or_gap(context, "exf_latest", lambda: publish_if_newer(
        feature_store.open(), FEATURES, EXF_LATEST, rec))
    keep_published(context.log, FEATURES, EXF_LATEST, rec)
    context.add_output_metadata({
        "non_null_count": snap.non_null_count, "indicators": len(INDICATOR_NAMES), "as_of": snap.timestamp,
        "source": exf_source.kind, "dvol_btc": num(row["dvol_btc"]) if math.isfinite(row["dvol_btc"]) else "missing",
        "missing": MetadataValue.md(_missing_md(snap)),
        "family_status": MetadataValue.json(dict(snap.sources)) if snap.sources else "recorded files",
        "published_exf_latest": published, "store_gap": gap})
    return df


# ---------------------------------------------------------------- EsoF


@asset(partitions_def=DAILY, group_name="risk", io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
       description="Esoteric factors (calendar, quarterly expiry, lunar phase) as of the day's 00:00 UTC "
                   "(dolphin.esof; advisory); publishes esof_latest.")
def esof(context: AssetExecutionContext, feature_store: FeatureStoreResource) -> pd.DataFrame:
    day = context.partition_key
    rec = esof_record(day_start_ms(day))
    value = dict(rec)
    ts = value.pop("timestamp")
    published, gap = publish_or_gap(context, "esof_latest", lambda: publish_if_newer(
        feature_store.open(), FEATURES, ESOF_LATEST, Record(value, ts)))
    keep_published(context.log, FEATURES, ESOF_LATEST, Record(value, ts))
    df = pd.DataFrame([{k: v for k, v in rec.items() if k != "date"}])
    df.insert(0, "day", day_column(context, 1))
    context.add_output_metadata({"timestamp": ts, "weekday": rec["weekday_name"],
                                 "days_to_quarterly_expiry": round(rec["days_to_quarterly_expiry"], 3),
                                 "published_esof_latest": published, "store_gap": gap})
    return df


# ---------------------------------------------------------------- ACB


def w750_history(scan_dir, day: str, n_days: int) -> np.ndarray:
    """Daily w750 values (``dolphin.acb.daily_w750``) of the ``n_days`` days before ``day``, oldest first;
    NaN for a day without scans. Only bars opening before ``day`` 00:00 are read."""
    d0 = day_start_ms(day)
    start = d0 - n_days * DAY_MS
    out = np.full(n_days, np.nan)
    try:
        scans = read_scans(scan_dir, start, d0 - 1)
    except FileNotFoundError:
        return out
    if len(scans) == 0:
        return out
    days, d = daily_w750(scans, ACB_CONFIG)
    pos = (days - start) // DAY_MS
    keep = (pos >= 0) & (pos < n_days)
    out[pos[keep]] = d[keep]
    return out


def acb_for_day(exf_source: ExfSource, scan_dir, day: str):
    """The daily ACB state of ``day`` (as of its 00:00): the same inputs ``dolphin.acb.daily_states`` gives a
    backtest (ExF frame with its reference window, the regime window of daily w750 values)."""
    d0 = day_start_ms(day)
    frame = exf_source.daily_frame(day_str(d0 - ACB_CONFIG.exf_ref_days * DAY_MS), day)
    past = w750_history(scan_dir, day, ACB_CONFIG.regime_window_days + 1)
    return acb_daily(exf_inputs(frame, day, ACB_CONFIG), past, day, ACB_CONFIG)


@asset(partitions_def=DAILY, group_name="risk", io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
       deps=[AssetDep("eigen_scans", partition_mapping=ACB_SCAN_DAYS),
             AssetDep("exf", partition_mapping=ACB_EXF_DAYS)],
       description="Daily ACB state (boost, beta) as of the day's 00:00 UTC (dolphin.acb.acb_daily) from the ExF "
                   "daily frame and the w750 velocity of the 31 days before, read from the scan Parquet files; "
                   "published to acb_state by compare-and-set (a newer stored state, e.g. per-scan updates, "
                   "is kept).")
def acb_state(context: AssetExecutionContext, exf_source: ExfSource, scan_dir: ScanDir,
              feature_store: FeatureStoreResource) -> pd.DataFrame:
    day = context.partition_key
    st = acb_for_day(exf_source, scan_dir.dir(), day)
    published, gap = publish_or_gap(context, "acb_state", lambda: publish_acb(feature_store.open(), st))
    keep_published(context.log, FEATURES, ACB_STATE, st.to_record())
    row = {"boost": st.boost, "beta": st.beta, "exf_score": st.exf_score, "exf_coverage": st.exf_coverage,
           "regime_score": st.regime_score, "regime_days": st.regime_days,
           "w750_value": np.nan if st.w750_value is None else st.w750_value,
           "w750_threshold": np.nan if st.w750_threshold is None else st.w750_threshold,
           "w750_spread": np.nan if st.w750_spread is None else st.w750_spread,
           "missing": ",".join(st.missing), "notes": "; ".join(st.notes), "updated_at": iso_utc(st.updated_at)}
    df = pd.DataFrame([row])
    df.insert(0, "day", day_column(context, 1))
    context.add_output_metadata({
        "boost": st.boost, "beta": st.beta, "exf_coverage": st.exf_coverage, "regime_days": st.regime_days,
        "missing": ", ".join(st.missing) or "none",
        "notes": MetadataValue.md("\n".join(f"- {n}" for n in st.notes) or "none"),
        "published_acb_state": published, "store_gap": gap})
    return df


# ---------------------------------------------------------------- MC envelope


class MCEnvelopeConfig(Config):
    end_day: str = ""  # first day NOT simulated (YYYY-MM-DD); empty: the last complete day of the market data
    lookback_days: int = 60
    n_variants: int = 8
    n_paths: int = 2000
    seed: int = 20240601


def default_end_day(now: datetime, chain_last_day: str | None = None) -> str:
    """The day the envelope is FOR (its first day not simulated). Open-ended (live) source: today (UTC).
    Recorded source: the day the capital chain runs next (the day after its last ledger day, the first
    partition when it has none), never later than the data's end: an envelope computed on the data's last
    60 days while the chain is still in January would put the future into a paper day (issue 14)."""
    today = now.astimezone(timezone.utc).date()
    if SETTINGS.end is None:
        return today.isoformat()
    end = min(today, datetime.fromisoformat(SETTINGS.end_exclusive).date())
    if chain_last_day is not None:
        nxt = datetime.fromisoformat(chain_last_day).date() + timedelta(days=1)
    else:
        nxt = datetime.fromisoformat(DAILY.get_first_partition_key()).date()
    return min(end, nxt).isoformat()


def _chain_last_day(ledger) -> str | None:
    from dolphin_assets.settings import STRATEGY

    days = ledger.open().current(STRATEGY)
    return days[-1].day if days else None


def envelope_scans(scan_dir, panel):
    """The scans row-aligned with ``panel``: from the eigen_scans Parquet files when they cover it, else
    computed (the scanner is a pure function of the bars, so both give the same rows)."""
    try:
        s = read_scans(scan_dir, int(panel.open_time[0]), int(panel.open_time[-1]))
        if len(s) == panel.n_bars and np.array_equal(s.timestamp, panel.close_time):
            return s, "scan files"
    except FileNotFoundError:
        pass
    return scan(panel, int(panel.open_time[0])), "computed from market data (scan files do not cover the window)"


def envelope_for(market_data, scan_dir, end_day: str, config: MCEnvelopeConfig, as_of=None):
    """The envelope FOR ``end_day`` (the engine over the ``lookback_days`` complete days before it), as the
    ``mc_envelope`` asset computes it; ``as_of`` defaults to ``end_day`` 00:00. Returns (MCEnvelope, daily
    returns, variant names, window start ms, where the scans came from). ``Failure`` naming the window when
    the variants cannot run."""
    end_ms = day_start_ms(end_day)
    start_ms = end_ms - config.lookback_days * DAY_MS
    cfg = ENGINE_CONFIG
    try:
        panel = market_data.load_day(start_ms, end_ms - 1, mc_history_bars(cfg))
    except DataError as exc:  # e.g. a window before the data's first day
        raise Failure(description=f"mc_envelope ({day_str(start_ms)} .. {end_day}): {exc}") from None
    scans, scans_from = envelope_scans(scan_dir, panel)
    try:
        returns, names = engine_daily_variants(panel, scans, cfg, end_day=end_day, lookback_days=config.lookback_days,
                                               n_variants=config.n_variants, seed=config.seed)
    except ValueError as exc:
        raise Failure(description=f"mc_envelope ({day_str(start_ms)} .. {end_day}): {exc}") from None
    env = forewarn(returns, MCConfig(n_paths=config.n_paths, seed=config.seed),
                   as_of=end_ms if as_of is None else as_of, variant_names=names)
    return env, returns, names, start_ms, scans_from


@asset(group_name="risk", kinds={"python"}, deps=[AssetDep("eigen_scans")],
       description="MC forewarner envelope (dolphin.mc): the engine re-run over the last 60 complete days for the "
                   "BLUE configuration and 7 perturbed neighbours, block-bootstrapped into 2000 paths; "
                   "publishes mc_forewarner_latest (status, catastrophic_prob, envelope_score).")
def mc_envelope(context: AssetExecutionContext, config: MCEnvelopeConfig, market_data: MarketData,
                scan_dir: ScanDir, feature_store: FeatureStoreResource, ledger: Ledger) -> MaterializeResult:
    now = datetime.now(timezone.utc)
    live = SETTINGS.end is None
    end_day = config.end_day or default_end_day(now, None if live else _chain_last_day(ledger))
    end_ms = day_start_ms(end_day)
    # scheduled runs are as of now (the envelope's age is how old the computation is); an explicit end day
    # (backfill, test) is as of that day's 00:00 so the record is reproducible
    # a recorded source is always as of the day it is for (00:00), so its age runs from there: the runtime's
    # bar clock and the chain then never see it before that day, and a backfill never publishes it as fresh
    as_of = now if (live and not config.end_day) else end_ms
    env, returns, names, start_ms, scans_from = envelope_for(market_data, scan_dir.dir(), end_day, config, as_of)
    rec = env.to_store_record()
    rec = Record({**rec.value, "window_start": day_str(start_ms), "window_end_exclusive": end_day}, rec.timestamp)
    published, gap = publish_or_gap(context, "mc_forewarner_latest", lambda: publish_if_newer(
        feature_store.open(), FEATURES, MC_FOREWARNER_LATEST, rec))
    keep_published(context.log, FEATURES, MC_FOREWARNER_LATEST, rec)
    mean_ret = returns.mean(axis=1)
    return MaterializeResult(metadata={
        "status": env.status, "catastrophic_prob": env.catastrophic_prob, "envelope_score": env.envelope_score,
        "reason": env.reason, "window": f"{day_str(start_ms)} .. {day_str(end_ms - DAY_MS)}",
        "variants": len(names), "scans": scans_from, "as_of": rec.timestamp,
        "as_of_rule": ("explicit end_day" if config.end_day else "live: today, as of now" if live
                       else "recorded: the chain's next day, as of its 00:00"),
        "variant_mean_daily_return": MetadataValue.json({n: float(r) for n, r in zip(names, mean_ret)}),
        "published_mc_forewarner_latest": published, "store_gap": gap})


exf_day_job = define_asset_job("exf_day", selection=["exf"],
                               description="The day's ExF snapshot (23:00 UTC), with its check.")
acb_day_job = define_asset_job("acb_day", selection=["acb_state", "esof"],
                               description="The day's ACB state and EsoF (as of 00:00 UTC; the ACB reads the "
                                           "previous days' scans).")
mc_envelope_job = define_asset_job("mc_envelope_job", selection=["mc_envelope"],
                                   description="MC forewarner envelope over the last complete days.")

RISK_ASSETS = [exf, esof, acb_state, mc_envelope]
