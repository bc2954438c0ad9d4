"""Watching the scan Arrow directory (``<scan_dir>/YYYY-MM-DD/scan_*.arrow``, the layout of
``dolphin.scanner.writer.scan_file_path``): which files are new, and publishing one (``publish_scan_file``).

Shared by the Dagster scan-file sensor / ``scan_latest`` asset (``dolphin_assets``) and the scan bridge
(``dolphin.bridge``), so both publish byte-identical records and step the ACB the same way.

Rules (the cursor is the newest mtime handled plus the names handled at exactly that mtime, never a
scan number: NG6-style scanners restart their counters, so names go backwards while mtimes go forward):

- a file is new when its mtime is past the cursor's, or equal to it under a name not handled yet (file
  times are coarse: two files can share one); a rewrite under the same name gets a new mtime and is new
  once more;
- temporary names (``.scan_*.tmp`` of the atomic writer, anything not ``scan_*.arrow``) are ignored;
- a file whose Arrow footer/table does not parse is *partial* while it is younger than ``settle_s``
  (still being written: it is re-checked every poll, whatever the cursor does, until it parses); older
  than that it is *corrupt*: reported once and passed over, never blocking the files after it.

Pure functions of the directory and the cursor (JSON), so the sensor is a thin wrapper and the rules
are testable without Dagster.
"""

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from dolphin.scanner.schema import parse_metadata

log = logging.getLogger("dolphin.scan_files")
_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SCAN_FILE = re.compile(r"^scan_[^.]+\.arrow$")


@dataclass
class Cursor:
    mtime_ns: int = -1
    names: list = field(default_factory=list)  # relative names handled with mtime == mtime_ns
    pending: dict = field(default_factory=dict)  # partial files: relative name -> size when last seen

    def is_new(self, f: "ScanFile") -> bool:
        return f.mtime_ns > self.mtime_ns or (f.mtime_ns == self.mtime_ns and f.rel not in self.names)

    def to_json(self) -> str:
        return json.dumps({"mtime_ns": self.mtime_ns, "names": self.names, "pending": self.pending}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        d = json.loads(text)
        return cls(int(d.get("mtime_ns", -1)), list(d.get("names", [])), dict(d.get("pending", {})))


@dataclass(frozen=True)
class ScanFile:
    rel: str  # YYYY-MM-DD/scan_<n>.arrow
    path: Path
    mtime_ns: int
    size: int

    @property
    def key(self) -> tuple:
        return (self.mtime_ns, self.rel)

    @property
    def cache_key(self) -> tuple:
        return (str(self.path), self.mtime_ns, self.size)


@dataclass
class Poll:
    ready: list  # complete new files, oldest first (ScanFile)
    corrupt: list  # (ScanFile, reason)
    partial: list  # ScanFile
    cursor: Cursor

    @property
    def newest(self) -> ScanFile | None:
        return self.ready[-1] if self.ready else None


def list_scan_files(scan_dir, days=None) -> list:
    """Every ``scan_*.arrow`` file under ``scan_dir``'s day folders (only the folders named in ``days``
    when given), sorted by (mtime, relative name)."""
    out = []
    root = Path(scan_dir)
    if not root.is_dir():
        return out
    for day in root.iterdir():
        if not (day.is_dir() and _DAY_DIR.match(day.name)) or (days is not None and not days(day.name)):
            continue
        out += day_scan_files(root, day.name)
    return sorted(out, key=lambda f: f.key)


def is_day_folder(name: str) -> bool:
    return bool(_DAY_DIR.match(name))


def day_scan_files(root, name: str) -> list:
    """The ``scan_*.arrow`` files of one day folder (unsorted; none if the folder is gone)."""
    out = []
    try:
        entries = list(os.scandir(Path(root) / name))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for e in entries:
        if not _SCAN_FILE.match(e.name):
            continue
        try:
            st = e.stat()
        except FileNotFoundError:  # renamed/removed between listing and stat
            continue
        out.append(ScanFile(f"{name}/{e.name}", Path(e.path), st.st_mtime_ns, st.st_size))
    return out


def check_arrow(path) -> str | None:
    """None if ``path`` is a complete one-row scan Arrow IPC file, else why not."""
    try:
        with pa.memory_map(str(path)) as src:
            table = pa.ipc.open_file(src).read_all()
        parse_metadata(table.schema)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    if table.num_rows != 1:
        return f"{table.num_rows} rows, expected one scan"
    return None


def poll(scan_dir, cursor: Cursor, *, settle_s: float = 30.0, now_s: float | None = None, files=None) -> Poll:
    """The new complete / corrupt / partial files after ``cursor``. ``files``: the candidate files if the
    caller listed them itself (the bridge lists only the day folders that changed), default every file."""
    now_ns = int((time.time() if now_s is None else now_s) * 1e9)
    files = list_scan_files(scan_dir) if files is None else sorted(files, key=lambda f: f.key)
    todo = [f for f in files if cursor.is_new(f) or f.rel in cursor.pending]
    ready, corrupt, partial = [], [], []
    for f in todo:
        why = check_arrow(f.path)
        if why is None:
            ready.append(f)
        elif now_ns - f.mtime_ns < settle_s * 1e9:
            partial.append(f)
        else:
            corrupt.append((f, why))
    done = ready + [f for f, _ in corrupt]
    top = max([cursor.mtime_ns, *(f.mtime_ns for f in done)])
    names = sorted({*(cursor.names if top == cursor.mtime_ns else ()), *(f.rel for f in done if f.mtime_ns == top)})
    return Poll(ready, corrupt, partial, Cursor(top, names, {f.rel: f.size for f in partial}))


def newest_complete(scan_dir) -> ScanFile | None:
    """The newest (by mtime, name) complete scan file, for a run without an explicit file."""
    for f in reversed(list_scan_files(scan_dir)):
        if check_arrow(f.path) is None:
            return f
    return None


# ---------------------------------------------------------------- per-scan ACB update


def acb_scans_between(scan_dir, after_ms: int, upto_ms: int) -> list:
    """The complete scan files with scan time in (after_ms, upto_ms], oldest first, as (ts, w750 velocity,
    rel): the ones a per-scan ACB update has not seen yet (the sensor's runs publish only the newest file
    of a poll; the ACB's EMA must still step through every scan)."""
    from dolphin.scanner import read_scan_arrow
    from dolphin.timeutil import DAY_MS, day_str

    # day folders are named by bar open time (scan time - one bar): only the days the window touches are read
    first, last = day_str(after_ms - DAY_MS), day_str(upto_ms)
    out = []
    for f in list_scan_files(scan_dir, days=lambda d: first <= d <= last):
        got = _ACB_ROWS.get(f.cache_key)
        if got is None:
            if check_arrow(f.path) is not None:
                continue
            row = read_scan_arrow(f.path)
            got = (int(row.timestamp[-1]), float(row.velocity[-1, row.window_index(750)]))
            if len(_ACB_ROWS) >= _ACB_ROWS_MAX:
                _ACB_ROWS.clear()
            _ACB_ROWS[f.cache_key] = got
        ts, v = got
        if after_ms < ts <= upto_ms:
            out.append((ts, v, f.rel))
    return sorted(out)


# (path, mtime_ns, size) of a complete file -> (scan time, w750 velocity): a long-running caller (the scan bridge)
# reads each file once; a rewritten file (atomic rename: new mtime) is read again
_ACB_ROWS: dict = {}
_ACB_ROWS_MAX = 8192


def apply_acb_scans(store, scan_dir, upto_ms: int) -> tuple:
    """Step the stored ``acb_state`` through the scans after its ``updated_at`` up to ``upto_ms``
    (``dolphin.acb.acb_on_scan``) and store it with compare-and-set on the exact record read
    (``FeatureStore.update``): two concurrent updaters never lose a step or put an older state back.
    Scans of another day than the state's stop the update (the daily state of that day comes first).
    The stored state is also kept in the published-record log (rehydration restores it after a restart).
    Returns (applied scan count, note)."""
    from dolphin.acb import AcbState, acb_on_scan
    from dolphin.store import ACB_STATE, FEATURES

    outcome = {"n": 0, "note": ""}

    def step(cur):
        outcome.update(n=0, note="")
        if cur is None:
            outcome["note"] = "no acb_state stored yet (materialise acb_state for the day first)"
            return None
        try:
            state = AcbState.from_record(cur)
        except ValueError as exc:  # the next daily acb_state replaces it; the scan itself is published already
            outcome["note"] = f"stored acb_state unreadable, not updated: {exc}"
            return None
        for ts, v, rel in acb_scans_between(scan_dir, int(state.updated_at), upto_ms):
            try:
                state = acb_on_scan(state, v, ts)
            except ValueError as exc:
                outcome["note"] = f"stopped at {rel}: {exc}"
                break
            outcome["n"] += 1
        return state.to_record() if outcome["n"] else None

    stored = store.update(FEATURES, ACB_STATE, step)
    if outcome["n"]:
        from dolphin.rehydrate import keep_published

        keep_published(log, FEATURES, ACB_STATE, stored)
    return outcome["n"], outcome["note"] or f"{outcome['n']} scan(s) applied"


# ---------------------------------------------------------------- one scan file -> the feature store


@dataclass(frozen=True)
class ScanPublish:
    record: object  # the scan_latest Record built from the file (dolphin.store.records.scan_record)
    published: bool  # False: the store already held a scan at least as new (publish_if_newer)
    acb_steps: int  # per-scan ACB steps applied (compare-and-set)
    acb_note: str
    row: object = None  # the one-row ScanResult read from the file


def publish_scan_file(store, scan_dir, path) -> ScanPublish:
    """What the ``scan_latest`` asset and the scan bridge both do with one complete scan file: its
    ``scan_latest`` record (``scan_record``, source = the file path) stored with ``publish_if_newer`` in the
    scan order (``scan_is_newer``: an older scan never overwrites a newer one), then the per-scan ACB step
    (``apply_acb_scans`` up to the scan's time). Raises ``StoreUnavailableError`` / ``TimeoutError`` from
    the store; the file must be complete (``check_arrow``)."""
    from dolphin.scanner import read_scan_arrow
    from dolphin.store import FEATURES, SCAN_LATEST, publish_if_newer
    from dolphin.store.records import scan_is_newer, scan_record

    row = read_scan_arrow(path)
    rec = scan_record(row, -1, str(path))
    published = publish_if_newer(store, FEATURES, SCAN_LATEST, rec, newer=scan_is_newer)
    steps, note = apply_acb_scans(store, scan_dir, int(row.timestamp[-1]))
    return ScanPublish(rec, published, steps, note, row)
