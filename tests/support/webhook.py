"""A loopback HTTP endpoint for alert deliveries: records bodies, or hangs, or answers 500."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Loopback:
    """An HTTP server on 127.0.0.1: ``mode`` ok (200, bodies recorded), hang (never answers in time), 500."""

    def __init__(self, mode="ok"):
        self.mode, self.bodies, self.paths = mode, [], []
        self.release = threading.Event()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if outer.mode == "hang":
                    outer.release.wait(30)
                    return
                outer.paths.append(self.path)
                outer.bodies.append(json.loads(body))
                code = 500 if outer.mode == "500" else 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if code == 200 else b'{"ok": false}')

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()
