"""A loopback Binance public-data archive (data.binance.vision layout: files, checksums, programmed misbehaviour)
and the autouse fixture that keeps every socket on 127.0.0.1 (the archive downloader and bookDepth history tests)."""

import hashlib
import http.server
import socket
import threading
import time

import pytest


class Archive:
    """Files by URL path plus per-path misbehaviour programs; every request is recorded."""

    def __init__(self):
        self.files, self.programs, self.requests = {}, {}, []
        self.lock = threading.Lock()
        self.stall_s = 3.0

    def add(self, rel, body, checksum=None):
        self.files["/" + rel] = body
        sha = checksum or hashlib.sha256(body).hexdigest()
        self.files["/" + rel + ".CHECKSUM"] = f"{sha}  {rel.rsplit('/', 1)[1]}\n".encode()

    def program(self, rel, **prog):
        self.programs.setdefault("/" + rel, {}).update(prog)

    def take(self, path, key):
        """Consume one planned misbehaviour for this path (counts down; True = forever)."""
        with self.lock:
            prog = self.programs.get(path, {})
            n = prog.get(key, 0)
            if n is True:
                return True
            if n > 0:
                prog[key] = n - 1
                return True
            return False

    def gets(self, rel=None, suffix=".zip"):
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith(suffix)
                and (rel is None or r[1] == "/" + rel)]


def _handler(arch):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes: avoid 40 ms delayed-ACK stalls

        def log_message(self, *a):
            pass

        def _empty(self, status):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, head):
            path, rng = self.path, self.headers.get("Range")
            with arch.lock:
                arch.requests.append((self.command, path, rng))
            prog = arch.programs.get(path, {})
            if arch.take(path, "slow"):  # no headers until well past the client's timeout
                time.sleep(arch.stall_s)
            if arch.take(path, "status500"):
                return self._empty(500)
            body = arch.files.get(path)
            if body is None:
                return self._empty(404)
            if arch.take(path, "corrupt"):
                body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
            start = 0
            if rng and not prog.get("ignore_range"):
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    return self._empty(416)
                if prog.get("bad_range"):  # claims a partial response but sends the file from byte 0
                    start = 0
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if head:
                return
            if arch.take(path, "drop"):  # promise everything, send a third, hang up
                self.wfile.write(part[: len(part) // 3])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if arch.take(path, "stall"):  # send a third, then go silent past the client's timeout
                self.wfile.write(part[: len(part) // 3])
                self.wfile.flush()
                time.sleep(arch.stall_s)
                self.close_connection = True
                return
            self.wfile.write(part)

        def do_GET(self):
            self._serve(False)

        def do_HEAD(self):
            self._serve(True)

    return H


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """No test may reach beyond this machine: every outgoing connect must target 127.0.0.1."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        assert host == "127.0.0.1", f"test tried to connect to {address!r}"
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client hung up on purpose (rejected a response, timed out): not a test failure
        super().handle_error(request, client_address)


@pytest.fixture
def server():
    arch = Archive()
    srv = _Server(("127.0.0.1", 0), _handler(arch))
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    arch.base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield arch
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)
