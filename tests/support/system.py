"""Watching what the runtime publishes, for the system tests that run the stack on loopback."""

import threading
import time


class SafetyWatch:
    """Polls ``DOLPHIN_SAFETY`` every ``every_s`` on a thread and appends ``item(monotonic time, reading)`` to
    ``seen`` whenever ``key(reading)`` changes (default: the posture). A store call that fails is skipped (an
    outage is what some tests cause)."""

    def __init__(self, store, *, key=lambda r: r.posture, item=lambda t, r: (t, r), every_s: float = 0.05):
        self.store, self.key, self.item, self.every_s = store, key, item, every_s
        self.seen: list = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="safety-watch", daemon=True)
        self._t.start()

    def _run(self) -> None:
        from dolphin.store import StoreUnavailableError
        from dolphin.survival.stack import read_safety

        last = None
        while not self._stop.wait(self.every_s):
            try:
                r = read_safety(self.store)
            except StoreUnavailableError:
                continue
            if r is not None and self.key(r) != last:
                last = self.key(r)
                self.seen.append(self.item(time.monotonic(), r))

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)
