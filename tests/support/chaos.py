"""A misbehaving network between the agent and the sandbox WMS, for fault tests.

The proxy forwards everything to the sandbox. For the next ``count`` pushes (POST .../movements) it
misbehaves in the chosen way; reads (item master, health, stock) always pass through. Where it
matters, the batch reaches the WMS first and only the answer is lost: the hardest case for
"nothing applied twice".

Modes: ``reset`` (applied, then the connection is reset half way through the answer), ``hang``
(applied, then no answer at all), ``not_json`` (applied, then a 200 that is not JSON), ``partial``
(applied, then only the first half of the per-event results), ``status:N`` (HTTP N, not applied),
``redirect`` (307 to another listener, which records any Authorization header it receives).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class ChaosProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` with switchable faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.count = 0
        self.pushes = 0
        self.faulted = 0
        self.hang_s = 30.0
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30)
        self._server: ThreadingHTTPServer | None = None
        self.other = _Recorder()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fault(self, mode: str, count: int = 1_000_000) -> None:
        """Misbehave as ``mode`` for the next ``count`` pushes."""
        with self._lock:
            self.mode, self.count = mode, count

    def heal(self) -> None:
        self.fault("pass", 0)

    def start(self) -> ChaosProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._forward(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle_post(self, self.rfile.read(length))

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.other.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.other.stop()
        self._http.close()

    # -- behaviour ---------------------------------------------------------------------------

    def _take_fault(self) -> str:
        with self._lock:
            self.pushes += 1
            if self.count <= 0 or self.mode == "pass":
                return "pass"
            self.count -= 1
            self.faulted += 1
            return self.mode

    def _handle_post(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        mode = self._take_fault() if handler.path.endswith("/movements") else "pass"
        if mode.startswith("status:"):
            return _send(
                handler, int(mode.split(":")[1]), b'{"code": "INJECTED", "message": "injected by the chaos proxy"}'
            )
        if mode == "redirect":
            return _send(handler, 307, b"", {"Location": f"{self.other.url}{handler.path}"})
        upstream = self._upstream(handler, "POST", body)
        if mode == "pass":
            return _send(handler, upstream.status_code, upstream.content, _passed_headers(upstream))
        if mode == "hang":
            time.sleep(self.hang_s)
            return None
        if mode == "reset":
            handler.wfile.write(
                b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"res'
            )
            handler.wfile.flush()
            sock = handler.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return None
        if mode == "not_json":
            return _send(
                handler, 200, b"<html><body>502 Bad Gateway (cached)</body></html>", {"Content-Type": "text/html"}
            )
        if mode == "partial":
            results = upstream.json()["results"]
            return _send(handler, 200, json.dumps({"results": results[: len(results) // 2]}).encode())
        raise ValueError(f"unknown chaos mode {mode!r}")

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        upstream = self._upstream(handler, handler.command, body)
        _send(handler, upstream.status_code, upstream.content, _passed_headers(upstream))

    def _upstream(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> httpx.Response:
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("authorization", "content-type")}
        return self._http.request(method, f"{self.upstream}{handler.path}", content=body, headers=headers)


class _Recorder:
    """Another host:port that records what reaches it (for redirect tests)."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                recorder.requests += 1
                if self.headers.get("Authorization"):
                    recorder.authorizations.append(self.headers["Authorization"])
                _send(self, 200, b'{"results": []}')

            def do_GET(self) -> None:
                self.do_POST()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _passed_headers(response: httpx.Response) -> dict[str, str]:
    return {
        k: v for k, v in response.headers.items() if k.lower() in ("content-type", "retry-after", "www-authenticate")
    }


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {"Content-Type": "application/json"}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def self_signed_cert(folder: Any) -> tuple[Any, Any]:
    """Write a self-signed certificate for 127.0.0.1 and its key; return (cert path, key path)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "possync test WMS")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "wms-cert.pem", folder / "wms-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
