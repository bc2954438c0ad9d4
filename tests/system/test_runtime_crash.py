"""kill -9 a paper session at 20 random points, restart it each time: nothing acknowledged is lost or doubled.

The session is `dolphin runtime paper` (Nautilus replay of real spot-5m-2024 bars, 2024-03-04..06: 9 trades,
18 fills) journaling every fill to the SQLite ledger. ``--progress`` prints a line after each journal commit
(an acknowledged fill). The test kills the process right after the k-th such line plus a random delay (so
the kill lands anywhere: between fills, mid-commit, with a position open or a TP resting), or at a random
instant of start-up, restarts it, and finally lets it finish. The final journal must equal the
uninterrupted run's: same fill ids in the same order, same content, same closing capital to the cent.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dolphin.ledger.journal import FillJournal

START, END = "2024-03-04", "2024-03-06"
KILLS = 20
DOLPHIN = str(Path(sys.executable).with_name("dolphin"))


def _cmd(ledger):
    return [DOLPHIN, "runtime", "paper", "--start", START, "--end", END, "--ledger", str(ledger), "--progress"]


def _env(tmp_path):
    return {**os.environ, "DOLPHIN_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}


def _run_to_end(ledger, env) -> str:
    p = subprocess.run(_cmd(ledger), env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return p.stdout


def _run_and_kill(ledger, env, after_lines: int, delay_s: float) -> int:
    """Start the session, SIGKILL it after ``after_lines`` journal lines (+ delay); returns the number of
    journal lines it had printed (acknowledged commits) when it died."""
    proc = subprocess.Popen(_cmd(ledger), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = 0
    try:
        if after_lines == 0:
            time.sleep(delay_s)
        else:
            for line in proc.stdout:
                if line.startswith("journal "):
                    seen += 1
                    if seen == after_lines:
                        break
            time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        rest = proc.communicate(timeout=60)[0]
    seen += sum(ln.startswith("journal ") for ln in (rest or "").splitlines())
    assert proc.returncode in (-signal.SIGKILL, 0), proc.returncode
    return seen


@pytest.mark.timeout(900)
def test_kill_9_at_20_random_points_loses_and_doubles_nothing(tmp_path):
    env = _env(tmp_path)
    ref_path = tmp_path / "reference.sqlite"
    _run_to_end(ref_path, env)
    ref = FillJournal(ref_path)
    (ref_session,) = ref.sessions("BLUE")
    ref_events = ref.events("BLUE")
    n = len(ref_events)
    assert n >= 16 and ref_session["status"] == "closed"

    path = tmp_path / "crashed.sqlite"
    rng = random.Random(20241122)
    points, restored_open, have = [], 0, 0
    for i in range(KILLS):
        if i % 3 == 2 and have < n:
            # right after the next not yet journaled entry fill (fills alternate entry / take-profit): the
            # kill lands with the position open and its TP resting
            k, delay = have + 1 + (have % 2 == 1), 0.0
        else:  # anywhere: after a random journal line + up to 30 ms; k = 0: during start-up
            k = rng.randint(0, n)
            delay = rng.uniform(0.0, 2.5) if k == 0 else rng.uniform(0.0, 0.03)
        acknowledged = _run_and_kill(path, env, k, delay)
        j = FillJournal(path)
        if not j.sessions("BLUE"):
            assert acknowledged == 0  # killed before the session was opened
            points.append((k, round(delay, 3), 0))
            continue
        (sess,) = j.sessions("BLUE")
        r = j.restore("BLUE", sess["session"])
        got = list(r.events)
        # nothing acknowledged lost (the run re-simulates from the start: its first lines re-confirm
        # what earlier runs journaled), nothing doubled, and what is there is the reference's prefix
        assert len(got) >= min(acknowledged, n), (i, k, acknowledged, len(got))
        assert len({e.event_id for e in got}) == len(got)
        assert got == ref_events[:len(got)], f"kill {i}: journal is not a prefix of the uninterrupted run's"
        if r.positions:
            restored_open += 1
            # the restored position is the one the last entry fill opened
            last_entry = next(e for e in reversed(got) if e.role == "entry")
            (pos,) = r.positions.values()
            assert pos.symbol == last_entry.symbol and abs(pos.qty) == last_entry.qty
        points.append((k, round(delay, 3), len(got)))
        have = len(got)

    out = _run_to_end(path, env)
    assert "restored from the ledger" in out
    final = FillJournal(path)
    (sess,) = final.sessions("BLUE")
    events = final.events("BLUE")
    assert [e.event_id for e in events] == [e.event_id for e in ref_events]  # 0 lost, 0 doubled, same order
    assert events == ref_events  # same prices, quantities, fees, capital after each fill
    assert sess["status"] == "closed" and sess["runs"] >= 2
    assert round(sess["closing_capital"], 2) == round(ref_session["closing_capital"], 2)
    assert sess["closing_capital"] == ref_session["closing_capital"]
    assert sess["peak"] == ref_session["peak"] and sess["n_events"] == n
    # the kill points were spread over the session, some with a position open at the kill
    assert len({k for k, _, _ in points}) >= 10, points
    assert restored_open >= 1, points
    print(f"kill points (after line k, delay s, events in journal): {points}; restored with a position open: "
          f"{restored_open}; final capital {sess['closing_capital']:.2f} == {ref_session['closing_capital']:.2f}")
