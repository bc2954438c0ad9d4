"""`dolphin bridge`: the scan bridge (bring-up plan MIG6; the seeds' "Scan Bridge Service").

A small long-running process that watches the per-scan Arrow folder (``dolphin.scanner.writer.scan_dir``:
``$DOLPHIN_HOME/scans/YYYY-MM-DD/scan_*.arrow``, where the runtime's live scanner and ``dolphin scan
--arrow-files`` write) and, for every new complete scan file, within a second:

1. publishes ``DOLPHIN_FEATURES/scan_latest`` and steps ``acb_state`` by compare-and-set -- with
   ``dolphin.scan_files.publish_scan_file``, the very function the Dagster ``scan_latest`` asset runs, so the
   bridge and Dagster store identical records (``publish_if_newer`` in scan-time order: an older scan never
   overwrites a newer one; the ACB steps through every scan since the stored state, none lost or doubled
   when the sensor's run and the bridge race);
2. publishes the record (plus ``file``) on the topic ``DOLPHIN_SCAN_EVENTS``.

The Dagster scan-file sensor stays (asset lineage, every 15 s); whichever of the two comes second finds the
scan stored and changes nothing.

Rules
- New files by mtime, never by scan number or name (``dolphin.scan_files.poll``, the sensor's cursor): a
  scanner that restarts its counters writes lower names with newer mtimes, and those are new. Which scan
  ``scan_latest`` holds is still decided by the scan's own time (bar close) in the file, never by the name:
  a file with a lower name but a later scan time wins; a file rewritten now with an OLDER scan time (a
  backfill) is seen, and keeps the newer stored scan.
- Polling of directory mtimes every ``interval_s`` (default 50 ms; portable, no inotify): the root and the
  newest ``newest_days`` day folders are stat'ed every poll (so a new UTC day's folder is found at once),
  every day folder every ``full_every_s``; only folders that changed (or changed within the last 2 s:
  coarse file-system clocks) are listed. Cost per idle poll: a few ``stat`` calls, whatever the history.
- Temporary names of the atomic writers (``.scan_*.tmp``) are not scan files. A file that does not parse is
  partial while younger than ``settle_s`` (re-checked every poll), then corrupt: reported by name once and
  skipped; it never stops the files after it, and never the bridge.
- Store unavailable (``StoreUnavailableError``, lost compare-and-set races): retried with exponential back-off
  (0.1 s .. 5 s); meanwhile only the NEWEST waiting scan is kept (``scan_latest`` needs no older one; the ACB
  steps through every file anyway) and published as soon as the store answers.
- Restart: starts from the newest complete file by mtime and publishes it (``publish_if_newer``: only if the
  stored scan is older). Every ``key_check_s`` (5 s) it checks that ``scan_latest`` exists; if the key
  vanished (a Hazelcast member restarted) it runs ``dolphin.rehydrate.rehydrate`` (every missing key
  back from its durable source).
- SIGTERM / SIGINT: finishes the current step, closes the store, exit code 0. ``--once``: one pass (publish
  the newest file if the store is older, rehydrate if missing), exit 0, or 1 if the store could not be
  written.
"""

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dolphin.scan_files import (Cursor, ScanFile, check_arrow, day_scan_files, is_day_folder, poll,
                                publish_scan_file)
from dolphin.scanner.writer import scan_dir as default_scan_dir
from dolphin.store import FEATURES, SCAN_LATEST, SCAN_TOPIC, StoreUnavailableError

log = logging.getLogger("dolphin.bridge")

POLL_S = 0.05  # polling interval of the folder
SETTLE_S = 30.0  # an unparsable file untouched this long is corrupt (the sensor's rule)
KEY_CHECK_S = 5.0  # how often scan_latest's presence is checked (rehydration when it vanished)
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
RECENT_S = 2.0  # folders whose mtime is this recent are listed again (coarse file-system clocks)
LOG_EVERY_S = 1.0  # at most one "published" line per second (the others are counted in it)


class DayFolders:
    """Lists the scan files that may be new since the last call, cheaply (module docstring, "Polling")."""

    def __init__(self, root: Path, *, newest_days: int = 3, full_every_s: float = 5.0):
        self.root = Path(root)
        self.newest_days = newest_days
        self.full_every_s = full_every_s
        self._root_mtime = None
        self._days: list = []  # day folder names, sorted
        self._seen: dict = {}  # day name -> folder mtime_ns when last listed
        self._full_at = 0.0

    def _list_day(self, name: str) -> list:
        return day_scan_files(self.root, name)

    def everything(self) -> list:
        """Every scan file (start-up), and remember the folders' state."""
        self._refresh_days(force=True)
        files = []
        for name in self._days:
            try:
                self._seen[name] = (self.root / name).stat().st_mtime_ns
            except FileNotFoundError:
                continue
            files += self._list_day(name)
        self._full_at = time.monotonic()
        return files

    def _refresh_days(self, force: bool = False) -> None:
        try:
            m = self.root.stat().st_mtime_ns
        except FileNotFoundError:
            self._days, self._root_mtime = [], None
            return
        if force or m != self._root_mtime or time.time_ns() - m < RECENT_S * 1e9:
            self._root_mtime = m
            self._days = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and is_day_folder(e.name))

    def changed(self) -> list:
        """The files of every day folder that changed since it was last listed."""
        full = time.monotonic() - self._full_at >= self.full_every_s
        self._refresh_days(force=full)
        if full:
            self._full_at = time.monotonic()
        names = self._days if full else self._days[-self.newest_days:]
        now = time.time_ns()
        files = []
        for name in names:
            try:
                m = (self.root / name).stat().st_mtime_ns
            except FileNotFoundError:
                self._seen.pop(name, None)
                continue
            if m != self._seen.get(name) or now - m < RECENT_S * 1e9:
                self._seen[name] = m
                files += self._list_day(name)
        return files

    def stat(self, rel: str) -> ScanFile | None:
        p = self.root / rel
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        return ScanFile(rel, p, st.st_mtime_ns, st.st_size)


@dataclass
class BridgeStats:
    published: int = 0  # scans stored as scan_latest
    kept: int = 0  # scans the store already held (or held a newer one)
    announced: int = 0  # topic messages
    acb_steps: int = 0
    corrupt: list = field(default_factory=list)  # relative names reported corrupt
    store_failures: int = 0
    rehydrations: int = 0
    last: dict = field(default_factory=dict)  # the last scan handled: file, scan_time_ms, published


def _warm() -> None:
    """Import and load (numba cache) what the first publish needs, so the first scan is not ~1 s late."""
    from dolphin import acb
    from dolphin.scanner import read_scan_arrow  # noqa: F401
    from dolphin import rehydrate  # noqa: F401
    from dolphin.store import records  # noqa: F401

    acb._ema_step(float("nan"), 0.0, 1.0, 1.0)
    acb._combine(0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 1.0, 1.0)


class ScanBridge:
    def __init__(self, root=None, open_store=None, *, interval_s: float = POLL_S, settle_s: float = SETTLE_S,
                 key_check_s: float = KEY_CHECK_S, store_name: str = ""):
        from dolphin.adapters.store_factory import open_store_from_env

        self.root = default_scan_dir(root)
        self._open_store = open_store or open_store_from_env
        self.store_name = store_name
        self.interval_s = float(interval_s)
        self.settle_s = float(settle_s)
        self.key_check_s = float(key_check_s)
        self.folders = DayFolders(self.root)
        self.store = None
        self.cursor: Cursor | None = None
        self.waiting: list = []  # complete new files not yet published, oldest first (by mtime)
        self.stats = BridgeStats()
        self._backoff = 0.0
        self._retry_at = 0.0
        self._down_since = None
        self._key_check_at = 0.0
        self._announced_ms = None  # scan time last put on the topic by this process
        self._log_at = 0.0
        self._log_pending = None  # the last handled file's line, held back by the once-a-second limit
        self._log_handled = 0

    # ---------------------------------------------------------------- start-up
    def start(self) -> None:
        """Cursor at the newest complete file by (mtime, name); that file waits to be published (only stored
        if the store's scan is older). Older files are history: not reported, not announced."""
        _warm()
        files = sorted(self.folders.everything(), key=lambda f: f.key)
        newest = next((f for f in reversed(files) if check_arrow(f.path) is None), None)
        if newest is None:
            self.cursor = Cursor()
        else:
            self.cursor = Cursor(newest.mtime_ns, sorted(f.rel for f in files
                                                         if f.mtime_ns == newest.mtime_ns and f.rel <= newest.rel))
            self.waiting = [newest]
        log.info("scan bridge: watching %s (every %.0f ms), store %s; %d scan file(s) present, newest %s",
                 self.root, self.interval_s * 1000, self.store_name or "(configured)", len(files),
                 newest.rel if newest else "none")

    # ---------------------------------------------------------------- one poll
    def step(self) -> None:
        self._flush_log()
        files = self.folders.changed()
        listed = {f.rel for f in files}
        for rel in self.cursor.pending:  # partial files written in place: their folder may not change again
            if rel not in listed:
                f = self.folders.stat(rel)
                if f is not None:
                    files.append(f)
        p = poll(self.root, self.cursor, settle_s=self.settle_s, files=files)
        self.cursor = p.cursor
        for f, why in p.corrupt:
            self.stats.corrupt.append(f.rel)
            log.warning("corrupt scan file skipped: %s: %s", f.path, why)
        self.waiting += p.ready
        if not self.waiting and time.monotonic() < self._key_check_at:
            return
        if not self._store_ready():
            return
        while self.waiting:
            f = self.waiting[0]
            try:
                self._publish(f)
            except (StoreUnavailableError, TimeoutError) as e:
                self._store_failed(e)
                return
            except Exception as e:  # the file vanished or became unreadable since it was checked: reported, skipped
                log.warning("scan file %s not published: %s: %s", f.path, type(e).__name__, str(e)[:300])
            self.waiting.pop(0)
        self._store_ok()
        if time.monotonic() >= self._key_check_at:
            try:
                self._check_key()
            except (StoreUnavailableError, TimeoutError) as e:
                self._store_failed(e)

    def _store_ready(self) -> bool:
        if time.monotonic() < self._retry_at:
            if len(self.waiting) > 1:  # only the newest matters while the store is away
                self.waiting = self.waiting[-1:]
            return False
        if self.store is None:
            try:
                self.store = self._open_store()
            except (StoreUnavailableError, TimeoutError, OSError) as e:
                self._store_failed(e)
                return False
        return True

    def _store_failed(self, e) -> None:
        self.stats.store_failures += 1
        self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        if len(self.waiting) > 1:
            self.waiting = self.waiting[-1:]
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("feature store %s unavailable: %s; retrying with back-off (newest waiting scan: %s)",
                        self.store_name or "", " ".join(str(e).split())[:300],
                        self.waiting[-1].rel if self.waiting else "none")

    def _store_ok(self) -> None:
        if self._down_since is not None:
            log.warning("feature store %s back after %.1f s", self.store_name or "", time.monotonic() - self._down_since)
        self._down_since = None
        self._backoff = 0.0

    def _publish(self, f: ScanFile) -> None:
        out = publish_scan_file(self.store, self.root, f.path)
        rec = out.record
        ts = rec.value["scan_time_ms"]
        announce = out.published
        if not out.published:  # stored already (the sensor's run, a restart) or a newer scan is stored
            cur = self.store.get(FEATURES, SCAN_LATEST)
            announce = cur is not None and cur.value.get("scan_time_ms") == ts and self._announced_ms != ts
        if announce:
            self.store.publish(SCAN_TOPIC, {**json.loads(rec.to_json()), "file": f.rel})
            self._announced_ms = ts
            self.stats.announced += 1
        self.stats.published += out.published
        self.stats.kept += not out.published
        self.stats.acb_steps += out.acb_steps
        self.stats.last = {"file": f.rel, "scan_time_ms": ts, "published": out.published}
        self._log_pending = ("published" if out.published else "kept the stored (newer or same)", rec.timestamp,
                             ts, f.rel, out.acb_note)
        self._log_handled += 1
        self._flush_log()

    def _flush_log(self) -> None:
        """At most one line per LOG_EVERY_S, naming the LAST file handled and counting the others since the
        previous line; a line held back by the limit is written by a later poll, so the last file handled is
        always reported (a burst's final file never goes unlogged)."""
        if self._log_pending is None or time.monotonic() - self._log_at < LOG_EVERY_S:
            return
        what, stamp, ts, rel, acb = self._log_pending
        more = f" (+{self._log_handled - 1} more since the last line)" if self._log_handled > 1 else ""
        log.info("%s scan %s (%s) from %s; acb: %s%s", what, stamp, ts, rel, acb, more)
        self._log_at, self._log_pending, self._log_handled = time.monotonic(), None, 0

    def _check_key(self) -> None:
        self._key_check_at = time.monotonic() + self.key_check_s
        if self.store.get(FEATURES, SCAN_LATEST) is not None:
            return
        from dolphin.rehydrate import Sources, rehydrate, summary

        from dolphin.rehydrate import RESTORED

        results = rehydrate(self.store, Sources.default(scan_dir=self.root))
        self.stats.rehydrations += 1
        if any(r.state == RESTORED for r in results):
            log.warning("scan_latest was missing from the store: rehydrated: %s", summary(results))
        else:
            log.debug("scan_latest missing, nothing restored: %s", summary(results))

    # ---------------------------------------------------------------- loops
    def run(self, stop: threading.Event) -> None:
        self.start()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.step()
            except Exception:  # never crash the bridge on one bad poll; it is logged and the next poll retries
                log.exception("scan bridge: poll failed")
            stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def once(self) -> bool:
        """One pass: publish the newest file (if the store is older), rehydrate scan_latest if missing.
        Returns whether the store took everything."""
        self.start()
        self._key_check_at = 0.0
        self.step()
        return not self.waiting and self._down_since is None and self.store is not None

    def close(self) -> None:
        if self.store is not None:
            try:
                self.store.close()
            finally:
                self.store = None


# ---------------------------------------------------------------- CLI


def cmd_bridge(args) -> int:
    from dolphin.adapters.store_factory import store_config_from_env

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        where = store_config_from_env().describe()
    except (ValueError, OSError) as e:
        print(f"dolphin bridge: {e}", file=sys.stderr)
        return 2
    bridge = ScanBridge(args.scan_dir, interval_s=args.interval_ms / 1000.0, key_check_s=args.key_check_s,
                        store_name=where)
    try:
        if args.once:
            ok = bridge.once()
            last = bridge.stats.last
            print(f"bridge --once: {bridge.root} -> {where}: "
                  + (f"{last['file']} {'published' if last['published'] else 'already stored (or older)'}"
                     if last else "no scan file published")
                  + ("" if ok else "; the feature store could not be written"), flush=True)
            return 0 if ok else 1
        stop = threading.Event()

        def on_signal(signum, _frame):
            log.info("scan bridge: %s, stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        bridge.run(stop)
        s = bridge.stats
        log.info("scan bridge stopped: %d published, %d already stored, %d topic messages, %d ACB steps, "
                 "%d corrupt file(s) skipped", s.published, s.kept, s.announced, s.acb_steps, len(s.corrupt))
        return 0
    finally:
        bridge.close()


def register(sub) -> None:
    p = sub.add_parser("bridge", help="scan bridge: new scan Arrow files -> scan_latest, DOLPHIN_SCAN_EVENTS, acb_state",
                       description="Watches the scan folder (default $DOLPHIN_HOME/scans/YYYY-MM-DD/scan_*.arrow) "
                                   "and publishes every new scan file (by mtime) to scan_latest and the "
                                   "DOLPHIN_SCAN_EVENTS topic and steps acb_state (compare-and-set) within a second. "
                                   "Store: DOLPHIN_FEATURE_STORE / DOLPHIN_HZ_*. Stops cleanly on SIGTERM/SIGINT.")
    p.add_argument("--scan-dir", default=None, help="scan folder (default $DOLPHIN_HOME/scans)")
    p.add_argument("--interval-ms", type=float, default=POLL_S * 1000, help="polling interval (default 50)")
    p.add_argument("--key-check-s", type=float, default=KEY_CHECK_S,
                   help="how often scan_latest's presence is checked; missing -> rehydration (default 5)")
    p.add_argument("--once", action="store_true",
                   help="one pass: publish the newest scan file if the store's is older, then exit (1: store down)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_bridge)


if __name__ == "__main__":  # python -m dolphin.bridge [--once ...]: the same as `dolphin bridge`
    import argparse

    _ap = argparse.ArgumentParser(prog="dolphin")
    register(_ap.add_subparsers(dest="command"))
    _ns = _ap.parse_args(["bridge", *sys.argv[1:]])
    sys.exit(_ns.func(_ns))
