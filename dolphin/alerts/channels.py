"""Alert delivery: channels, and a dispatcher that never blocks the caller.

Environment (all optional; no channel configured = alerts off, ``notify`` is a no-op):

    DOLPHIN_ALERT_WEBHOOK_URL         generic webhook: one JSON POST per alert (treated as a secret: only its
                                      scheme and host are ever printed)
    DOLPHIN_ALERT_TELEGRAM_TOKEN      Telegram bot token (secret)
    DOLPHIN_ALERT_TELEGRAM_CHAT_ID    chat to post to (both Telegram variables are needed)
    DOLPHIN_ALERT_TELEGRAM_API        bot API base URL (default https://api.telegram.org; tests use loopback)
    DOLPHIN_ALERT_TIMEOUT_S           per-request timeout (default 5)
    DOLPHIN_ALERT_RATE_PER_MIN        alerts per minute per channel (default 20; the rest are dropped and counted)
    DOLPHIN_ALERT_DEDUP_S             the same alert key again within this window is dropped (default 300)

Rules: ``Dispatcher.notify`` de-duplicates (by ``Alert.key``), then hands the alert to each channel's bounded
queue (default 100; full: the oldest waiting alert is dropped, counted) and returns at once. Each channel has its
own delivery thread, so a hanging webhook delays neither the caller nor the Telegram channel. Each request has a
timeout; a failure (HTTP error, refused connection, timeout) is counted and logged with the secret removed, and
the alert is not retried (an alert that arrives minutes late is worse than a counted loss; the next state change
alerts again). Secrets never appear in logs, ``describe()`` or exception texts this module produces.
"""

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

log = logging.getLogger("dolphin.alerts")

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    kind: str  # posture | hibernate | override | fill | daily_pnl | floors | run_failure | asset_check | watchdog | ...
    title: str
    text: str = ""
    severity: str = "info"
    key: str = ""  # de-duplication key (default kind + title)
    fields: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
                    .replace("+00:00", "Z"))

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r}: one of {SEVERITIES}")

    @property
    def dedup_key(self) -> str:
        return self.key or f"{self.kind}:{self.title}"

    def to_json(self) -> dict:
        return {"source": "dolphin", **asdict(self)}

    def to_text(self) -> str:
        mark = {"info": "", "warning": "⚠️ ", "critical": "🚨 "}[self.severity]
        return f"{mark}DOLPHIN {self.title}" + (f"\n{self.text}" if self.text else "")


def redact(text: str, *secrets) -> str:
    out = str(text)
    for s in secrets:
        if s:
            out = out.replace(s, "***")
    return out


class ChannelError(RuntimeError):
    pass


def _post_json(url: str, payload: dict, timeout: float, secrets=()) -> int:
    req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "dolphin-alerts"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read(65536)
            return r.status
    except urllib.error.HTTPError as e:
        raise ChannelError(f"HTTP {e.code}") from None
    except urllib.error.URLError as e:  # the reason may quote the URL (and so the token): redact
        raise ChannelError(redact(f"{type(e.reason).__name__}: {e.reason}", url, *secrets)) from None
    except (TimeoutError, OSError) as e:
        raise ChannelError(redact(f"{type(e).__name__}: {e}", url, *secrets)) from None


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, timeout: float = 5.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError("DOLPHIN_ALERT_WEBHOOK_URL must be an http(s) URL")
        self.url, self.timeout = url, float(timeout)
        self._where = f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")

    def describe(self) -> str:
        return f"webhook {self._where}/..."

    def send(self, alert: Alert) -> None:
        _post_json(self.url, alert.to_json(), self.timeout)


class TelegramChannel:
    name = "telegram"

    def __init__(self, token: str, chat_id: str, base_url: str = "https://api.telegram.org", timeout: float = 5.0):
        if not token or not chat_id:
            raise ValueError("Telegram alerts need DOLPHIN_ALERT_TELEGRAM_TOKEN and DOLPHIN_ALERT_TELEGRAM_CHAT_ID")
        self.token, self.chat_id, self.base, self.timeout = token, str(chat_id), base_url.rstrip("/"), float(timeout)

    def describe(self) -> str:
        return f"telegram {self.base} chat {self.chat_id}"

    def send(self, alert: Alert) -> None:
        _post_json(f"{self.base}/bot{self.token}/sendMessage",
                   {"chat_id": self.chat_id, "text": alert.to_text()[:4000], "disable_web_page_preview": True},
                   self.timeout, secrets=(self.token,))


class _Lane:
    """One channel's bounded queue, rate limit and delivery thread."""

    def __init__(self, channel, queue_size: int, rate_per_min: float):
        self.channel = channel
        self.q: deque = deque()
        self.size = int(queue_size)
        self.rate = float(rate_per_min)
        self.sent_at: deque = deque()  # monotonic times of the last minute's deliveries
        self.lock = threading.Condition()
        self.stats = {"queued": 0, "sent": 0, "failed": 0, "dropped_full": 0, "dropped_rate": 0}
        self.busy = False
        self.stop = False
        self.t = threading.Thread(target=self._loop, name=f"dolphin-alerts-{channel.name}", daemon=True)
        self.t.start()

    def offer(self, alert: Alert) -> None:
        with self.lock:
            now = time.monotonic()
            while self.sent_at and now - self.sent_at[0] > 60.0:
                self.sent_at.popleft()
            if len(self.sent_at) + len(self.q) >= self.rate:
                self.stats["dropped_rate"] += 1
                return
            if len(self.q) >= self.size:
                self.q.popleft()
                self.stats["dropped_full"] += 1
            self.q.append(alert)
            self.stats["queued"] += 1
            self.lock.notify()

    def _loop(self) -> None:
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.q or self.stop)
                if self.stop and not self.q:
                    return
                alert = self.q.popleft()
                self.busy = True
                self.sent_at.append(time.monotonic())
            try:
                self.channel.send(alert)
                ok, err = True, ""
            except ChannelError as e:
                ok, err = False, str(e)
            except Exception as e:  # a bug in a channel must not kill its thread
                ok, err = False, f"{type(e).__name__}"
            with self.lock:
                self.busy = False
                self.stats["sent" if ok else "failed"] += 1
                self.lock.notify_all()
            if not ok:
                log.warning("alert %r not delivered to %s: %s", alert.title, self.channel.describe(), err)

    def idle(self) -> bool:
        return not self.q and not self.busy


class Dispatcher:
    def __init__(self, channels=(), *, queue_size: int = 100, rate_per_min: float = 20, dedup_s: float = 300.0,
                 clock=time.monotonic):
        self.lanes = [_Lane(c, queue_size, rate_per_min) for c in channels]
        self.dedup_s = float(dedup_s)
        self.clock = clock
        self._seen: dict = {}
        self._lock = threading.Lock()
        self.deduplicated = 0

    @property
    def enabled(self) -> bool:
        return bool(self.lanes)

    def describe(self) -> str:
        return ", ".join(l.channel.describe() for l in self.lanes) or "no alert channel configured"

    def notify(self, alert: Alert) -> bool:
        """Queue ``alert`` on every channel; never blocks. False when it was a duplicate (or alerts are off)."""
        if not self.lanes:
            return False
        now = self.clock()
        with self._lock:
            k = alert.dedup_key
            if k in self._seen and now - self._seen[k] < self.dedup_s:
                self.deduplicated += 1
                return False
            self._seen[k] = now
            if len(self._seen) > 10_000:  # forget the oldest keys
                for old in sorted(self._seen, key=self._seen.get)[:5_000]:
                    del self._seen[old]
        for lane in self.lanes:
            lane.offer(alert)
        return True

    def stats(self) -> dict:
        return {l.channel.name: dict(l.stats) for l in self.lanes} | {"deduplicated": self.deduplicated}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (at most ``timeout``) until every queued alert was delivered or failed."""
        deadline = time.monotonic() + timeout
        for lane in self.lanes:
            with lane.lock:
                if not lane.lock.wait_for(lane.idle, max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        for lane in self.lanes:
            with lane.lock:
                lane.stop = True
                lane.q.clear()
                lane.lock.notify_all()
        for lane in self.lanes:
            lane.t.join(0.5)  # a delivery stuck in its timeout is a daemon thread: not waited for


def dispatcher_from_env(env=None) -> Dispatcher:
    env = os.environ if env is None else env
    timeout = float(env.get("DOLPHIN_ALERT_TIMEOUT_S") or 5.0)
    chans = []
    if env.get("DOLPHIN_ALERT_WEBHOOK_URL"):
        chans.append(WebhookChannel(env["DOLPHIN_ALERT_WEBHOOK_URL"], timeout))
    if env.get("DOLPHIN_ALERT_TELEGRAM_TOKEN") or env.get("DOLPHIN_ALERT_TELEGRAM_CHAT_ID"):
        chans.append(TelegramChannel(env.get("DOLPHIN_ALERT_TELEGRAM_TOKEN", ""),
                                     env.get("DOLPHIN_ALERT_TELEGRAM_CHAT_ID", ""),
                                     env.get("DOLPHIN_ALERT_TELEGRAM_API") or "https://api.telegram.org", timeout))
    return Dispatcher(chans, rate_per_min=float(env.get("DOLPHIN_ALERT_RATE_PER_MIN") or 20),
                      dedup_s=float(env.get("DOLPHIN_ALERT_DEDUP_S") or 300))
