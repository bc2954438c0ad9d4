"""A feature store that misbehaves on purpose, for benchmarks and tests of the runtime's decision budget.

``StallingStore`` wraps any adapter: after ``stall(s)`` every call blocks until the stall ends (what a
Hazelcast member's SIGKILL does to each invocation until its timeout), and ``down = True`` makes every call
raise ``StoreUnavailableError`` at once (a disconnected client). Entry events arrive on the inner store's own
thread and are not stalled.
"""

import time

from dolphin.store.port import FeatureStore, StoreUnavailableError


class StallingStore(FeatureStore):
    def __init__(self, inner: FeatureStore):
        self.inner, self.until, self.down, self.calls = inner, 0.0, False, 0

    def stall(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def _gate(self) -> None:
        self.calls += 1
        wait = self.until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if self.down:
            raise StoreUnavailableError("StallingStore: store down (injected)")

    def get(self, m, k):
        self._gate()
        return self.inner.get(m, k)

    def put(self, m, k, r):
        self._gate()
        self.inner.put(m, k, r)

    def replace_if_same(self, m, k, e, n):
        self._gate()
        return self.inner.replace_if_same(m, k, e, n)

    def replace_text_if_same(self, m, k, text, n):
        self._gate()
        return self.inner.replace_text_if_same(m, k, text, n)

    def delete(self, m, k):
        self._gate()
        return self.inner.delete(m, k)

    def keys(self, m):
        self._gate()
        return self.inner.keys(m)

    def malformed(self) -> dict:
        return self.inner.malformed()

    def listen(self, m, cb):
        return self.inner.listen(m, cb)

    def unlisten(self, h):
        self.inner.unlisten(h)

    def close(self) -> None:
        self.inner.close()
