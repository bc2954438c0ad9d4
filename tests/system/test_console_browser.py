"""`dolphin console` in headless Chromium against the local venue's live paper day (the stack of
tests/system/test_system_paper_day.py: venue replaying usdtm-5m-2023 2023-07-17 17:30.., bridge, runtime sandbox with the
survival stack from the embedded store; SYNTHETIC healthy risk inputs from ``dolphin.demo.RiskFeed``).

One page stays open for the whole run (Chrome DevTools Protocol over a WebSocket: no reload ever happens):
- it renders, and while the ETHUSDT short is open its values match the ledger (journal capital, the position's
  side / quantity / entry price, the entry fill) and the store (posture and Rm in DOLPHIN_SAFETY);
- a store outage (the embedded store's files moved away, as in the system test) is shown as such within 2 s;
- each posture change the runtime publishes (HIBERNATE after the outage, APEX 5 healthy checks later) appears on
  the page within 2 s of being published, without a reload (the page's render counter keeps growing, its
  navigation entry stays the first one);
- the console runs with an operator token: the override form, filled and clicked in the page (the token typed into
  it), sets a HIBERNATE override in the ledger; the runtime applies it at its next bar-close check and the page
  shows HIBERNATE and the override in force; the action is in the console's audit file.
`dolphin alerts` runs alongside with a loopback webhook: the fills, the store outage and its end, HIBERNATE, APEX
again and the kill switch (the HIBERNATE override) each arrive as an alert.
Screenshots are written to $DOLPHIN_CONSOLE_SHOTS (default: the test's tmp folder)."""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.browser import FLAGS, chromium
from tests.support.system import SafetyWatch

pytest.importorskip("nautilus_trader")

SYMBOLS = ("BTCUSDT", "DOGEUSDT", "ETHUSDT")
START = "2023-07-17T17:30"
DAYS = 0.12  # 34 bars, 17:30 .. 20:15; the backtest's ETHUSDT short 18:15 .. 18:50 (TP)
SPEED = 1.0  # wall seconds per bar: the position stays open ~7 s


class Page:
    """One Chromium tab driven over the DevTools Protocol."""

    def __init__(self, url: str, width=1400, height=1000):
        from websockets.sync.client import connect

        self.prof = tempfile.TemporaryDirectory(prefix="dolphin-chromium-")
        self.proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={self.prof.name}",
                                      "--remote-debugging-port=0", "--remote-allow-origins=*",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
            elif not line and self.proc.poll() is not None:
                break
        if port is None:
            self.close()
            raise AssertionError("chromium did not open its DevTools port")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # drain
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            tab = next(t for t in json.load(r) if t["type"] == "page")
        self._conn = connect(tab["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)
        self.ws = self._conn.__enter__()
        self._id = 0
        self.send("Page.enable")
        self.send("Page.navigate", url=url)

    def send(self, method, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def text(self, element_id):
        return self.js(f"(document.getElementById({json.dumps(element_id)})||{{}}).textContent||null")

    def wait(self, cond, timeout, what, step=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(step)
        raise AssertionError(f"no {what} within {timeout} s")

    def screenshot(self, path: Path) -> Path:
        h = self.js("document.documentElement.scrollHeight")
        self.send("Emulation.setDeviceMetricsOverride", width=1400, height=int(h), deviceScaleFactor=1, mobile=False)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        self.send("Emulation.clearDeviceMetricsOverride")
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        try:
            self._conn.__exit__(None, None, None)
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.prof.cleanup()


@pytest.fixture
def home_store(tmp_path, monkeypatch):
    from dolphin.adapters.store_factory import open_store_from_env

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DOLPHIN_HOME", str(home))
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "embedded")
    for k in ("DOLPHIN_HZ_MEMBERS", "DOLPHIN_BINANCE_BASE_URL", "DOLPHIN_BINANCE_HTTP_URL",
              "DOLPHIN_BINANCE_WS_MARKET_URL", "DOLPHIN_BINANCE_WS_PRIVATE_URL", "DOLPHIN_CONSOLE_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return home, open_store_from_env()


def test_console_live_paper_day_in_chromium(home_store, tmp_path):
    from dolphin.demo import Proc, RiskFeed, Stack
    from dolphin.engine.config import POSTURE_NAMES
    from dolphin.ledger.journal import FillJournal
    from dolphin.survival.stack import read_safety

    chromium()  # skip (or fail in CI) before starting anything when there is no browser
    home, store = home_store
    shots = Path(os.environ.get("DOLPHIN_CONSOLE_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    feed = RiskFeed(store, SYMBOLS)
    stack = Stack(home, start=START, days=DAYS, speed=SPEED, symbols=SYMBOLS)
    token = "browser-test-operator-token-5e1d"
    console = Proc("console", [sys.executable, "-m", "dolphin.cli", "console", "--port", "0", "--interval", "0.25"],
                   {**stack.env, "DOLPHIN_CONSOLE_TOKEN": token}, stack.logdir)
    from tests.support.webhook import Loopback

    hook = Loopback()
    alerts = Proc("alerts", [sys.executable, "-m", "dolphin.cli", "alerts", "--interval", "0.5"],
                  {**stack.env, "DOLPHIN_ALERT_WEBHOOK_URL": hook.url + "/hook"}, stack.logdir)
    journal = FillJournal(home / "ledger" / "ledger.sqlite")
    watch = None
    published = []  # (monotonic time first seen, posture name) of each published change
    page = None
    latencies, outage_shown_s = [], None
    db = home / "store" / "features.sqlite"
    try:
        port = int(console.wait_for(r"listening on http://127\.0\.0\.1:(\d+)", 60).group(1))
        alerts.wait_for(r"watching", 60)
        page = Page(f"http://127.0.0.1:{port}/")
        page.wait(lambda: page.text("conn") == "live", 20, "live SSE connection")
        stack.start()
        watch = SafetyWatch(store, every_s=0.02, item=lambda t, r: (t, POSTURE_NAMES[r.posture]))
        published = watch.seen
        stack.procs["venue"].wait_for(r"replay starts", 120)
        # --- the short is open: the page against the ledger and the store
        page.wait(lambda: [e.role for e in journal.events("BLUE") if e.kind == "fill"] == ["entry"], 60, "entry fill")
        entry = next(e for e in journal.events("BLUE") if e.kind == "fill")
        page.wait(lambda: "ETHUSDT" in (page.text("positions-BLUE") or ""), 3, "the open position on the page")
        page.wait(lambda: "to TP" in (page.text("positions-BLUE") or "") and
                  "%" in (page.js("document.querySelector('#positions-BLUE tbody tr').cells[7].textContent") or ""),
                  5, "the position marked at the last close")
        shot_open = page.screenshot(shots / "console-position-open.png")
        snap = page.js("window.__snapshot")
        cap = journal.events("BLUE")[-1].capital_after
        safety = read_safety(store)
        row = page.js("Array.from(document.querySelector('#positions-BLUE tbody tr').cells).map(c => c.textContent)")
        fills_text = page.text("fills")
        capital_text = page.text("capital-BLUE")
        posture_text, rm_text = page.text("posture"), page.text("rm")
        # --- after the take-profit: store outage
        page.wait(lambda: [e.role for e in journal.events("BLUE") if e.kind == "fill"] == ["entry", "tp"], 30, "TP fill")
        page.wait(lambda: "flat" in (page.text("positions-BLUE") or ""), 3, "flat position after the TP")
        trades_text = page.text("trades")
        renders_before = page.js("window.__renders")
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        for p in files:
            p.rename(p.with_name(p.name + ".away"))
        t_out = time.monotonic()
        page.wait(lambda: page.text("store-status") == "store UNREACHABLE", 2.0, "the store outage on the page")
        outage_shown_s = time.monotonic() - t_out
        banner = page.text("banner")
        shot_outage = page.screenshot(shots / "console-store-outage.png")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t_out)))
        for p in files:
            p.with_name(p.name + ".away").rename(p)
        n_before = len(published)
        # --- posture changes after the outage: each must appear on the page within 2 s
        for want in ("HIBERNATE", "APEX"):
            seen = page.wait(lambda: next((c for c in published[n_before:] if c[1] == want), None), 30,
                             f"published posture {want}")
            page.wait(lambda: page.text("posture") == want, 2.0, f"posture {want} on the page within 2 s")
            latencies.append((want, time.monotonic() - seen[0]))
            n_before = published.index(seen) + 1
        shot_after = page.screenshot(shots / "console-after-recovery.png")
        # --- the operator's override from the page: HIBERNATE, applied by the runtime at its next check
        n_before = len(published)
        page.js(f"""(() => {{ const v = (id, x) => document.getElementById(id).value = x;
            v('ov-posture', 'HIBERNATE'); v('ov-ttl', '600'); v('ov-reason', 'browser test: venue incident');
            v('ov-who', 'tester'); v('ov-token', {json.dumps(token)}); document.getElementById('ov-set').click(); }})()""")
        t_click = time.monotonic()
        page.wait(lambda: (page.text("act-result") or "").startswith("done:"), 5, "the override accepted")
        page.wait(lambda: page.text("posture") == "HIBERNATE" and "IN FORCE" in (page.text("override") or ""), 5,
                  "HIBERNATE by override on the page")
        override_to_page_s = time.monotonic() - t_click
        override_text = page.text("override")
        shot_override = page.screenshot(shots / "console-override.png")
        page.wait(lambda: any(b["kind"] == "override" for b in hook.bodies), 5, "the kill-switch alert")
        nav = page.js("performance.getEntriesByType('navigation').length")
        renders_after = page.js("window.__renders")
        stack.procs["venue"].wait_for(r"replay finished", 60)
    finally:
        if watch is not None:
            watch.stop()
        if page is not None:
            page.close()
        code_console = console.stop(timeout=15)
        code_alerts = alerts.stop(timeout=15)
        hook.close()
        exits = stack.stop()
        feed.stop()
        store.close()
    print(f"\nconsole: override click -> HIBERNATE on the page {override_to_page_s:.2f} s; "
          f"outage shown after {outage_shown_s:.2f} s; posture change -> page latencies "
          f"{[(w, round(s, 3)) for w, s in latencies]}; renders {renders_before} -> {renders_after}; "
          f"console exit {code_console}; stack exits {exits}; screenshots {shots}")
    assert code_console[0] == 0, console.text()[-3000:]
    assert code_alerts[0] == 0, alerts.text()[-3000:]
    sent = [(b["kind"], b["title"]) for b in hook.bodies]
    print(f"alerts sent: {sent}")
    kinds = [k for k, _ in sent]
    assert kinds.count("fill") == 2 and "hibernate" in kinds and "override" in kinds, sent
    assert ("store", "feature store UNREACHABLE") in sent and ("store", "feature store reachable again") in sent, sent
    assert ("posture", "posture HIBERNATE -> APEX") in sent, sent
    assert any(t.startswith("KILL SWITCH") for k, t in sent if k == "override"), sent
    assert all(c == 0 for c, _ in exits.values()), exits
    # values match the ledger and the store (while the position was open)
    assert capital_text == f"{cap:,.2f} USDT", (capital_text, cap)
    assert row[0] == "SHORT ETHUSDT" and float(row[1]) == pytest.approx(entry.qty) \
        and float(row[2]) == pytest.approx(entry.price, rel=1e-5), (row, entry)
    assert snap["strategies"][0]["positions"][0]["qty"] == pytest.approx(entry.qty)
    assert "ETHUSDT" in fills_text and "entry" in fills_text and "SELL" in fills_text
    assert posture_text == POSTURE_NAMES[safety.posture] and rm_text == f"{safety.rm:.3f}", (posture_text, rm_text, safety)
    assert "ETHUSDT" in trades_text and "tp" in trades_text
    # the outage is shown as such, and the posture changes arrived live (no reload: one navigation, renders grew)
    assert "FEATURE STORE UNREACHABLE" in banner, banner
    assert [w for w, _ in latencies] == ["HIBERNATE", "APEX"] and all(s < 2.0 for _, s in latencies), latencies
    assert nav == 1 and renders_after > renders_before
    from tests.support.browser import non_blank_fraction

    assert "HIBERNATE until" in override_text and "tester (console)" in override_text, override_text
    assert any(p == "HIBERNATE" for _, p in published[n_before:]), published  # the runtime applied it
    audit = [json.loads(x) for x in (home / "console" / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["result"], a["who"]) for a in audit] == [("override_set", "ok", "tester")], audit
    assert token not in console.text() and token not in (home / "console" / "audit.jsonl").read_text()
    for png in (shot_open, shot_outage, shot_after, shot_override):
        assert non_blank_fraction(png) > 0.05, png
