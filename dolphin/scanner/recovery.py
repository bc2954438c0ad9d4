"""Leftovers of a killed `dolphin scan`: stale temporary files and the "incomplete run" marker.

Every scan file is written under a temporary name ``.<name>.<pid>.tmp`` and renamed (``writer._atomic_write``);
a SIGKILL between the two leaves the temporary file behind, where no reader looks at it but it takes space
forever. A run also leaves ``.scan_run.json`` in its output folder until it has written everything, so the
next run can say that the previous one stopped half-way (its day files / Arrow files are incomplete).
"""

import json
import os
import re
import time
from pathlib import Path

TMP_RE = re.compile(r"^\.(?:scan_\d+\.arrow|scans_\d{4}-\d{2}-\d{2}\.parquet)\.(\d+)\.tmp$")
MARKER = ".scan_run.json"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_tmp_files(root) -> list:
    """Temporary scan files under ``root`` whose writing process is gone (ours is never stale)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.rglob(".*.tmp"):
        m = TMP_RE.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            out.append(p)
    return sorted(out)


def clean_stale_tmp(root) -> list:
    """Delete the stale temporary files under ``root``; returns the paths removed."""
    removed = []
    for p in stale_tmp_files(root):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def previous_run(out_dir) -> dict | None:
    """The marker of an earlier run into ``out_dir`` that did not finish (its process is gone), else None."""
    f = Path(out_dir) / MARKER
    if not f.is_file():
        return None
    try:
        info = json.loads(f.read_text())
    except (OSError, ValueError):
        info = {"pid": -1, "started": "?", "args": "?"}
    if isinstance(info, dict) and pid_alive(int(info.get("pid", -1))) and int(info.get("pid", -1)) != os.getpid():
        return None  # still running (another scan into the same folder)
    return info if isinstance(info, dict) else {"pid": -1}


def mark_started(out_dir, args: str) -> Path:
    f = Path(out_dir) / MARKER
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                             "args": args}))
    return f


def mark_finished(out_dir) -> None:
    (Path(out_dir) / MARKER).unlink(missing_ok=True)
