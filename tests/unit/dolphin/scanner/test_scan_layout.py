"""One scan-file layout for the CLI (`dolphin scan --arrow-files`), the runtime's live scanner
(runtime/scan_files.py, called by DolphinStrategy at each bar close), the Dagster scan-file sensor and the
scan bridge: ``dolphin.scanner.writer.scan_dir`` / ``scan_file_path``."""

import time

import numpy as np

from dolphin.scanner import read_scan_arrow, read_scans, scan
from dolphin.scanner.writer import scan_dir, scan_file_path
from tests.support.runtime import _bar, _strategy
from tests.support.engine import real_panel


def test_every_component_resolves_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path / "home"))
    from dolphin.bridge import ScanBridge
    from dolphin.rehydrate import Sources
    from dolphin_assets.resources.scan_dir import ScanDir
    from runtime.scan_files import ScanFileWriter

    want = tmp_path / "home" / "scans"
    w = ScanFileWriter()
    try:
        assert scan_dir() == ScanDir().dir() == Sources.default().scan_dir == w.root == ScanBridge().root == want
    finally:
        w.close()
    assert ScanDir(path=str(tmp_path / "x")).dir() == scan_dir(tmp_path / "x") == tmp_path / "x"
    # day folder = UTC day of the bar OPEN; name = scan time (bar close)
    assert scan_file_path(want, 1_709_596_500_000, 1_709_596_800_000) == \
        want / "2024-03-04" / "scan_1709596800000.arrow"


def test_cli_arrow_files_go_to_the_watched_folder(tmp_path, monkeypatch, capsys):
    from dolphin.cli import main
    from dolphin.scan_files import poll, Cursor
    from tests.support.scanner import write_one_factor_set

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path / "home"))
    src = tmp_path / "src"
    src.mkdir()
    write_one_factor_set(src)
    assert main(["scan", "--data", str(src), "--out", str(tmp_path / "out"), "--start", "2024-01-03T10:00",
                 "--end", "2024-01-03T10:20", "--arrow-files", "--no-progress"]) == 0
    watched = tmp_path / "home" / "scans"
    assert f"5 per-scan Arrow file(s) -> {watched}" in capsys.readouterr().out
    p = poll(watched, Cursor())
    assert len(p.ready) == 5 and {f.rel[:10] for f in p.ready} == {"2024-01-03"}
    rows = [read_scan_arrow(f.path) for f in p.ready]
    day = read_scans(tmp_path / "out")
    for f, r in zip(sorted(p.ready, key=lambda f: f.rel), sorted(rows, key=lambda r: int(r.timestamp[0]))):
        assert f.path == scan_file_path(watched, r.open_time[0], r.timestamp[0])
    assert sorted(int(r.timestamp[0]) for r in rows) == [int(t) for t in day.timestamp]


def test_runtime_strategy_writes_each_scan_where_the_sensor_looks(tmp_path, monkeypatch):
    """DolphinStrategy + ScanFileWriter: one file per bar close, bit-identical to the batch scan, found by
    the scan-file sensor of the code location (which names the folder it watched)."""
    import dagster as dg

    from dolphin_assets.resources.scan_dir import ScanDir
    from dolphin_assets.sensors.scan_files import scan_files_sensor
    from runtime.scan_files import ScanFileWriter

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path / "home"))
    panel = real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=60)
    s = _strategy(panel)
    s.scan_files = ScanFileWriter()  # default folder: $DOLPHIN_HOME/scans, as runtime.nodes sets it
    for t in range(panel.n_bars):
        for j in range(3):
            s.on_bar(_bar(panel, j, t))
    assert s.scan_files.flush(10)
    s.scan_files.close()
    assert s.scan_files.written == panel.n_bars and s.scan_files.failed == s.scan_files.dropped == 0
    root = ScanDir().dir()
    files = sorted(root.glob("*/scan_*.arrow"))
    assert len(files) == panel.n_bars and not list(root.glob("*/.*.tmp"))
    batch = scan(panel, int(panel.open_time[0]))
    got = read_scans(root)  # per-scan Arrow files (no daily Parquet here)
    assert np.array_equal(got.timestamp, batch.timestamp)
    for name in ("lam", "velocity", "instability", "loadings", "close", "vel_div"):
        assert np.array_equal(getattr(got, name), getattr(batch, name), equal_nan=True), name
    # the Dagster sensor (default resources: the same folder) requests a run for the newest file
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"scan_dir": ScanDir()})
        res = scan_files_sensor(ctx)
    (req,) = res.run_requests
    assert req.tags["dolphin/new_scan_files"] == str(panel.n_bars)
    assert req.run_config["ops"]["scan_latest"]["config"]["path"].startswith(str(root))
    assert req.tags["dolphin/scan_dir"] == str(root)
    with dg.instance_for_test() as instance:  # the tick's skip message names the folder it watched
        ctx = dg.build_sensor_context(instance=instance, resources={"scan_dir": ScanDir()},
                                      cursor=scan_files_sensor(ctx := dg.build_sensor_context(
                                          instance=instance, resources={"scan_dir": ScanDir()})).cursor)
        res = scan_files_sensor(ctx)
    assert f"no new complete scan file in {root}" in res.skip_reason.skip_message


def test_scan_write_does_not_hold_up_the_decision(tmp_path):
    """The strategy's call only copies the row and queues it (the write, fsync and rename run on the writer
    thread): its cost per bar close is measured against the decision path without it."""
    from runtime.scan_files import ScanFileWriter

    panel = real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=400)
    w = ScanFileWriter(tmp_path / "scans")
    s = _strategy(panel)
    for t in range(50):  # warm
        for j in range(3):
            s.on_bar(_bar(panel, j, t))
    s.scan_files = w
    row = s._scanner.push(int(panel.open_time[50]), panel.close[50])
    n = 300
    t0 = time.perf_counter_ns()
    for _ in range(n):
        w.write(row)
    per_call_us = (time.perf_counter_ns() - t0) / n / 1000
    assert w.flush(30)
    w.close()
    assert w.written == n and w.dropped == 0
    assert per_call_us < 200, per_call_us  # measured ~10-20 µs; an fsync'd write is milliseconds
