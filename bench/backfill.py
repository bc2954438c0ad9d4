"""Backfill benchmark (`make bench`): every day partition of spot-5m-2024 through the whole BLUE graph.

One Dagster run per partition, in day order (the capital chain needs day N-1 before day N), each with the
multiprocess executor (2 processes, forkserver with the code location preloaded so a step does not pay for
Python + numba + Dagster imports). Fresh DOLPHIN_HOME / DAGSTER_HOME in a temporary directory.
Prints time per partition (goal <= 30 s) and total (goal <= 30 min on 2 cores), the checks' verdicts, and
verifies that the chained ledger equals one continuous engine run over the same days.

    python bench/backfill.py [--days N] [--keep]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOALS = {"per_partition_s": 30.0, "total_min": 30.0}
EXECUTION = {"execution": {"config": {
    "max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": ["dolphin_assets.preload"]}}}}}


def blue_paper_day_job():
    """The code location's blue_paper_day selection, with the plain multiprocess executor so that the run
    config below states the process count and start method explicitly."""
    import dagster as dg

    from dolphin_assets.definitions import ASSET_CHECKS, ASSETS, resources
    from dolphin_assets.schedules import BLUE_CHAIN

    job = dg.define_asset_job("blue_paper_day_bench", selection=BLUE_CHAIN, executor_def=dg.multiprocess_executor)
    return dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=[job],
                          resources=resources()).resolve_job_def("blue_paper_day_bench")


def continuous_equity(first_day: str, last_day: str):
    """Closing equity per day of ONE engine run over the same days (the chain must equal it exactly)."""
    import numpy as np

    from dolphin.timeutil import day_start_ms
    from dolphin.data import load_panel
    from dolphin.engine.backtest import run_backtest
    from dolphin.scanner import scan
    from dolphin.timeutil import DAY_MS
    from dolphin_assets.settings import ENGINE_CONFIG, SETTINGS

    p = load_panel(SETTINGS.data, start_ms=day_start_ms(first_day), end_ms=day_start_ms(last_day) + DAY_MS - 1)
    r = run_backtest(p, scan(p), ENGINE_CONFIG, trade_from_ms=int(p.close_time[0]), close_at_end=False)
    ends = np.flatnonzero(np.diff(p.open_time // DAY_MS)).tolist() + [p.n_bars - 1]
    return [float(r.equity[i]) for i in ends], len(r.trades)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="backfill benchmark")
    ap.add_argument("--days", type=int, default=0, help="only the first N partitions (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data home")
    ap.add_argument("--risk-layer", default="none", choices=("none", "acb", "full"),
                    help="daily_pnl_blue's risk_layer (default none: the chain is compared with one plain engine "
                         "run; the chain under the full layer equals one long risk backtest, "
                         "tests/integration/dagster/test_dagster_blue_risk.py)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="dolphin-backfill-"))
    os.environ["DOLPHIN_HOME"] = str(tmp)
    os.environ.pop("DOLPHIN_WAREHOUSE", None)
    from dolphin_assets.dev import dagster_home

    os.environ["DAGSTER_HOME"] = str(dagster_home(tmp / "dagster"))

    import dagster as dg

    from dolphin.ledger import CapitalLedger
    from dolphin_assets.partitions import DAILY

    keys = DAILY.get_partition_keys()
    keys = keys[:args.days] if args.days else keys
    job = dg.reconstructable(blue_paper_day_job)
    print(f"backfill {len(keys)} partitions {keys[0]} .. {keys[-1]} of blue_paper_day "
          f"(multiprocess executor, 2 processes); data home {tmp}", flush=True)
    times, verdicts, failed = [], Counter(), []
    run_config = {**EXECUTION, "ops": {"daily_pnl_blue": {"config": {"risk_layer": args.risk_layer}}}}
    t_all = time.perf_counter()
    try:
        with dg.DagsterInstance.get() as instance:
            for i, key in enumerate(keys):
                t0 = time.perf_counter()
                res = dg.execute_job(job, instance=instance, tags={"dagster/partition": key}, run_config=run_config,
                                     raise_on_error=False)
                times.append(time.perf_counter() - t0)
                if not res.success:
                    failed.append(key)
                    print(f"  {key}: run FAILED (run id {res.run_id})", flush=True)
                    break
                for ev in res.get_asset_check_evaluations():
                    if ev.asset_key.to_user_string() == "daily_pnl_blue":
                        status = ev.metadata["status"].value if "status" in ev.metadata else str(ev.passed)
                        verdicts[(ev.check_name, status)] += 1
                    else:
                        verdicts[(ev.check_name, "PASS" if ev.passed else "FAIL")] += 1
                if (i + 1) % 10 == 0 or i + 1 == len(keys):
                    el = time.perf_counter() - t_all
                    print(f"  {i + 1:4d}/{len(keys)} {key}  last {times[-1]:5.1f} s  "
                          f"mean {el / (i + 1):5.1f} s/partition  elapsed {el / 60:5.1f} min", flush=True)
        total = time.perf_counter() - t_all
        per = total / len(times)
        print(f"\ntotal {total / 60:.1f} min for {len(times)} partitions: {per:.1f} s/partition of the whole graph "
              f"(median {statistics.median(times):.1f} s, max {max(times):.1f} s)")
        n_all = len(DAILY.get_partition_keys())
        full_min = total / 60 * n_all / len(times)  # = total when every partition ran
        est = "" if len(times) == n_all else f" (extrapolated from {len(times)} partitions: {full_min:.1f} min)"
        print(f"goals: <= {GOALS['per_partition_s']:.0f} s/partition: "
              f"{'met' if per <= GOALS['per_partition_s'] else 'MISSED'}; all {n_all} partitions <= "
              f"{GOALS['total_min']:.0f} min: {'met' if full_min <= GOALS['total_min'] else 'MISSED'}{est}")
        print("\ncheck verdicts over the partitions:")
        for (name, status), n in sorted(verdicts.items()):
            print(f"  {name:32s} {status:5s} {n:4d}")
        if not failed and args.risk_layer == "none":
            ledger = CapitalLedger(tmp / "ledger" / "ledger.sqlite").current("BLUE")
            ref, n_trades = continuous_equity(keys[0], keys[-1])
            chained = [e.record.closing_equity for e in ledger]
            same = chained == ref
            print(f"\nledger: {len(ledger)} days, final equity {chained[-1]:,.2f}, "
                  f"{sum(e.record.n_trades for e in ledger)} trades; continuous run over the same days: "
                  f"{ref[-1]:,.2f}, {n_trades} trades -> {'identical' if same else 'DIFFERENT'}")
            if not same:
                return 1
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
