"""Start `dolphin venue` as a subprocess on a free loopback port, and signed REST calls to it."""

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEY, SECRET = "venue-test-key-7f3a", "venue-test-secret-91c2"


class VenueProcess:
    def __init__(self, *args, python=None, env=None):
        e = dict(os.environ, DOLPHIN_VENUE_API_KEY=KEY, DOLPHIN_VENUE_API_SECRET=SECRET,
                 PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        e.update(env or {})
        self.proc = subprocess.Popen([python or sys.executable, "-m", "dolphin.cli", "venue", "--port", "0", *args],
                                     cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"venue did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(m.group(1))
        self.http, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                self.get("/fapi/v1/ping")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)

    def get(self, path, **params):
        return call(self.http, "GET", path, params)

    def signed(self, method, path, **params):
        return call(self.http, method, path, params, signed=True)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, self.proc.stderr.read()


def call(base, method, path, params, *, signed=False, key=KEY, secret=SECRET, headers=None):
    """(status, json body). Signed: timestamp + HMAC-SHA256 over the query, X-MBX-APIKEY header."""
    params = {k: v for k, v in params.items() if v is not None}
    h = dict(headers or {})
    if signed:
        params.setdefault("timestamp", int(time.time() * 1000))
        q = urllib.parse.urlencode(params)
        params["signature"] = hmac.new(secret.encode(), q.encode(), hashlib.sha256).hexdigest()
    if signed or path.endswith("listenKey"):
        h.setdefault("X-MBX-APIKEY", key)
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
