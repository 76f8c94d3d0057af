"""A local webhook receiver: an HTTP server on 127.0.0.1 (a random port) in a thread, which answers each POST with
the next status of its script and keeps what it got, so that tests can verify the signature as a customer would."""

import hashlib
import hmac
import http.server
import json
import threading

import pytest

SECRET = "whsec-test-4f1c"


class Received:
    def __init__(self, path, headers, body):
        self.path, self.headers, self.body = path, headers, body

    @property
    def json(self):
        return json.loads(self.body)

    def signed_with(self, secret):
        """What a receiver does: HMAC-SHA256 of the raw body under the shared secret, compared in constant time."""
        header = self.headers.get("X-LabelPortal-Signature", "")
        if not header.startswith("sha256="):
            return False
        expected = hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header.removeprefix("sha256="))


class Receiver:
    def __init__(self, statuses=(200,), headers=None):
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.received = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(Received(self.path, self.headers, body))  # names case-insensitive
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}/hooks/labelportal?source=test"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    """receiver(statuses=(500, 200)) → a running Receiver; all are stopped after the test."""
    started = []

    def start(statuses=(200,), **options):
        started.append(Receiver(statuses, **options))
        return started[-1]

    yield start
    for one in started:
        one.close()


@pytest.fixture
def private_allowed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    return settings
