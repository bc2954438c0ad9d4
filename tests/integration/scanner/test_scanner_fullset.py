"""The whole real spot-5m-2024 set through scan + daily Parquet (a few seconds; part of the default run)."""

import numpy as np

from dolphin.scanner import WINDOWS, read_scans, scan, write_day_parquet
from tests.support.scanner import check_against_reference, spot_panel


def test_full_set_scan_and_daily_files(tmp_path):
    p = spot_panel()
    T = p.n_bars
    res = scan(p)
    assert len(res) == T and res.n_assets == 50
    for k, W in enumerate(WINDOWS):
        assert res.valid[:, k].sum() == T - W  # lambda_W exists from bar W: the first 750 bars have no w750
    assert np.isfinite(res.vel_div[151:]).all()
    fb = res.fallback_counts()
    assert sum(fb.values()) < 1e-3 * 4 * T, fb
    # 300 bars spread over the whole set, all four windows, against the dense reference
    rows = np.sort(np.random.default_rng(42).choice(np.arange(1, T), 300, replace=False))
    assert check_against_reference(res, p.close, first_bar=0, rows=rows) > 1100

    paths = write_day_parquet(res, tmp_path)
    assert len(paths) == 250  # 249 whole days + 2024-09-06 00:00..04:40
    sizes = [len(read_scans(tmp_path, start=d, end=d)) for d in ("2024-01-01", "2024-05-05", "2024-09-06")]
    assert sizes == [288, 288, 57]
    back = read_scans(tmp_path, start="2024-05-05", end="2024-05-05")
    k = int(np.searchsorted(res.open_time, back.open_time[0]))
    assert np.array_equal(back.loadings, res.loadings[k:k + 288], equal_nan=True)
    assert np.array_equal(back.lam, res.lam[k:k + 288], equal_nan=True)
