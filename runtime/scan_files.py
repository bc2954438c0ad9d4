"""The runtime's live scanner -> one Arrow file per scan, in the folder the scan bridge and the Dagster
scan-file sensor watch (``dolphin.scanner.writer.scan_dir``, layout ``scan_file_path``).

``DolphinStrategy`` calls ``ScanFileWriter.write(row)`` once per bar close, right after its scanner's push.
That call only copies the one-row scan (the scanner reuses its output buffers) and hands it to one writer
thread: building the Arrow table, writing, fsync and the atomic rename (temporary name, ``os.replace``) happen
off the decision path, so the bridge never sees a partial file and the decision never waits on the disk.
Files are written in the order of the bar closes. A full queue (the disk stalled for ``maxsize`` bars) drops the
scan with one error line rather than block a decision; a failed write is logged (rate-limited) and the
runtime trades on -- its scanner runs in-process, the files feed the bridge and Dagster.
"""

import atexit
import logging
import queue
import threading
import time
from dataclasses import replace

import numpy as np

from dolphin.scanner.writer import scan_dir, write_scan_arrow

log = logging.getLogger("runtime.scan_files")
_STOP = object()


def _copy(row):
    """A one-row ScanResult that owns its arrays (``LiveScanner.push`` returns views of a reused buffer)."""
    kw = {}
    for name, value in vars(row).items():
        if isinstance(value, np.ndarray):
            kw[name] = value.copy()
    return replace(row, **kw) if kw else row


class ScanFileWriter:
    """``write(row)``: queue one scan for its Arrow file under ``root`` (default ``$DOLPHIN_HOME/scans``)."""

    def __init__(self, root=None, *, maxsize: int = 1024, fsync: bool = True):
        self.root = scan_dir(root)
        self.fsync = fsync
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_path = None
        self.last_error = ""
        self._q = queue.Queue(maxsize=maxsize)
        self._last_warn = 0.0
        self._thread = threading.Thread(target=self._run, name="dolphin-scan-files", daemon=True)
        self._thread.start()
        atexit.register(self.close, 5.0)  # what is queued reaches the disk when the process exits normally
        log.info("runtime scan files -> %s/YYYY-MM-DD/scan_<close_ms>.arrow", self.root)

    def write(self, row) -> None:
        """Queue ``row`` (a one-row ScanResult); never blocks, never raises into the strategy."""
        try:
            self._q.put_nowait(_copy(row))
        except queue.Full:
            self.dropped += 1
            log.error("scan file for bar close %s dropped: %d scans waiting for the disk (%s)",
                      int(row.timestamp[0]), self._q.qsize(), self.root)

    def _run(self) -> None:
        while True:
            row = self._q.get()
            try:
                if row is _STOP:
                    return
                self.last_path = write_scan_arrow(row, self.root, fsync=self.fsync)
                self.written += 1
            except Exception as e:  # a full / read-only disk: the runtime trades on
                self.failed += 1
                self.last_error = f"{type(e).__name__}: {e}"
                now = time.monotonic()
                if now - self._last_warn > 60:
                    self._last_warn = now
                    log.error("scan file not written under %s (%d failed so far): %s", self.root, self.failed,
                              self.last_error)
            finally:
                self._q.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued scan is on disk (tests, shutdown). Returns whether it drained in time."""
        end = time.monotonic() + timeout
        while self._q.unfinished_tasks:
            if time.monotonic() > end:
                return False
            time.sleep(0.002)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread. Idempotent."""
        if self._thread.is_alive():
            self.flush(timeout)
            self._q.put(_STOP)
            self._thread.join(timeout)
