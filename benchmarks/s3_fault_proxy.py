"""An S3 endpoint that can be taken down without losing a byte: a reverse proxy in front of
another one (the local stack's moto) that answers 503 ServiceUnavailable while it is down.

    proxy = S3FaultProxy("http://127.0.0.1:19000").start()   # listens on 127.0.0.1, free port
    ... give proxy.url to the clients as their S3 endpoint ...
    proxy.down = True    # every request now gets 503 and an S3 XML error
    proxy.down = False   # requests reach the upstream again
    proxy.stop()

Stopping moto for an outage would empty it (it keeps objects in memory only); behind the proxy
it keeps running and keeps them, as a real S3 does while it answers 5xx. Used by
benchmarks/streaming_soak.py's ``--outage s3@...``; nothing under spool/ imports it.

While up, every request is relayed as it came: method, path and query, headers (Host
included, so a signature still matches; hop-by-hop headers such as Connection are the
proxy's own, and ``Expect: 100-continue`` is answered by the proxy), and the body, by its
Content-Length or with its chunked framing as is (aws-chunked uploads included). The
response's status, headers and body come back unchanged (a chunked body is chunked again).
Client connections are kept alive (HTTP/1.1); each has an upstream connection of its own,
opened again when the upstream closed it. While down, a request's body is read and dropped
(or, when it waits for ``100 Continue``, never asked for and the connection closed), and the
answer is a 503 with ``<Error><Code>ServiceUnavailable</Code>...`` that botocore retries as
a 5xx. Requests already relayed when the proxy goes down finish normally.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import select
import socket
import sys
import threading
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# hop-by-hop: between a client and the proxy, or the proxy and the upstream, never relayed.
# Transfer-Encoding is relayed with the body's chunked framing.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "upgrade", "expect"}
BUFFER_MAX = 16 * 2**20  # bodies up to this are read whole first, so a request can be re-sent
PIECE = 64 * 1024
IDLE_SECONDS = 300  # a client connection with no request for this long is closed


class _ClientGone(Exception):
    """The client closed its connection in the middle of a request."""


class _UpstreamFailed(Exception):
    """The upstream could not be reached, or dropped the request."""


class S3FaultProxy:
    """A threaded reverse proxy to ``upstream`` (``http://host:port``) on ``host``, a free
    port unless ``port`` is given. ``down`` (read/write) turns the 503s on and off;
    ``forwarded`` and ``refused`` count the requests relayed and answered with a 503."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 120.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{upstream!r}: give the upstream as http://host:port")
        self.upstream = upstream
        self._scheme = parts.scheme
        self._upstream_addr = (parts.hostname,
                               parts.port or (443 if parts.scheme == "https" else 80))
        self.timeout = timeout
        self._down = threading.Event()
        self._lock = threading.Lock()
        self.forwarded = 0
        self.refused = 0
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def down(self) -> bool:
        return self._down.is_set()

    @down.setter
    def down(self, value: bool) -> None:
        if value:
            self._down.set()
        else:
            self._down.clear()

    def start(self) -> S3FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="s3-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every client connection."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server.close_clients()

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _count(self, refused: bool) -> None:
        with self._lock:
            if refused:
                self.refused += 1
            else:
                self.forwarded += 1

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" \
            else http.client.HTTPConnection
        conn = cls(*self._upstream_addr, timeout=self.timeout)
        conn.connect()
        return conn


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: S3FaultProxy

    def __init__(self, *args, **kwargs) -> None:
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, sock: socket.socket, present: bool) -> None:
        with self._clients_lock:
            if present:
                self._clients.add(sock)
            else:
                self._clients.discard(sock)

    def close_clients(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients), set()
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (_ClientGone, ConnectionError, TimeoutError)):
            return  # a client that went away is no news
        print(f"s3_fault_proxy: {client_address}: {exc!r}", file=sys.stderr, flush=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "s3-fault-proxy"
    timeout = IDLE_SECONDS
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self._upstream: http.client.HTTPConnection | None = None
        self._no_continue = False

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self._drop_upstream()
        self.server.track(self.connection, False)

    def log_message(self, format, *args) -> None:  # the requests are not logged
        pass

    def handle_expect_100(self) -> bool:
        if self.server.proxy.down:
            self._no_continue = True  # answer at once; the body is never sent
            return True
        return super().handle_expect_100()

    def _relay(self) -> None:
        no_continue, self._no_continue = self._no_continue, False
        try:
            framing, length = self._framing()
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return
        proxy = self.server.proxy
        if proxy.down:
            if no_continue and framing != "none":
                self.close_connection = True  # the body stays unsent and unread
            else:
                self._read_body(framing, length, lambda _piece: None)
            proxy._count(refused=True)
            self._refuse()
            return
        try:
            response = self._forward(framing, length)
        except _UpstreamFailed as exc:
            self.close_connection = True
            self._error(502, "BadGateway", f"s3_fault_proxy: the upstream failed: {exc}")
            return
        proxy._count(refused=False)
        try:
            self._relay_response(response)
        finally:
            response.close()
            if response.will_close:
                self._drop_upstream()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _relay

    # the request

    def _framing(self) -> tuple[str, int]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return "chunked", 0
        length = self.headers.get("Content-Length")
        if length is None:
            return "none", 0
        n = int(length)
        if n < 0:
            raise ValueError(length)
        return ("length", n) if n else ("none", 0)

    def _read_exactly(self, n: int, send) -> None:
        while n:
            piece = self.rfile.read(min(n, PIECE))
            if not piece:
                raise _ClientGone
            send(piece)
            n -= len(piece)

    def _read_line(self) -> bytes:
        line = self.rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise _ClientGone
        return line

    def _read_body(self, framing: str, length: int, send) -> None:
        """Pass the request's body to ``send`` piece by piece, chunked framing included."""
        if framing == "length":
            self._read_exactly(length, send)
        elif framing == "chunked":
            while True:
                line = self._read_line()
                send(line)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to an empty line
                        line = self._read_line()
                        send(line)
                        if line in (b"\r\n", b"\n"):
                            return
                self._read_exactly(size + 2, send)  # the data and its CRLF

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The upstream connection of this client connection, and whether it was used
        before; a new one if the upstream closed the old one (readable while idle)."""
        conn = self._upstream
        if conn is not None and conn.sock is not None:
            idle = select.poll()  # not select(): no limit on the descriptor's number
            idle.register(conn.sock, select.POLLIN)
            if not idle.poll(0):
                return conn, True
        self._drop_upstream()
        try:
            self._upstream = self.server.proxy._connect()
        except OSError as exc:
            raise _UpstreamFailed(exc) from None
        return self._upstream, False

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _forward(self, framing: str, length: int) -> http.client.HTTPResponse:
        body = None
        if framing == "none":
            body = b""
        elif framing == "length" and length <= BUFFER_MAX:
            pieces: list[bytes] = []
            self._read_exactly(length, pieces.append)
            body = b"".join(pieces)
        while True:
            conn, reused = self._connection()
            try:
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        conn.putheader(name, value)
                conn.endheaders()
                if body is not None:
                    if body:
                        conn.send(body)
                else:
                    self._read_body(framing, length, self._sender(conn))
                return conn.getresponse()
            except _ClientGone:
                self._drop_upstream()
                raise
            except (OSError, http.client.HTTPException) as exc:
                self._drop_upstream()
                # a kept-alive connection the upstream closed just now: send it again
                if reused and body is not None:
                    continue
                raise _UpstreamFailed(exc) from None

    @staticmethod
    def _sender(conn: http.client.HTTPConnection):
        def send(piece: bytes) -> None:
            try:
                conn.send(piece)
            except OSError as exc:
                raise _UpstreamFailed(exc) from None
        return send

    # the response

    def _relay_response(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        bodiless = self.command == "HEAD" or response.status in (204, 304) \
            or 100 <= response.status < 200
        if not bodiless and not response.chunked and response.length is None:
            self.close_connection = True  # the body ends when the upstream closes
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if bodiless:
            return
        while True:
            try:
                piece = response.read(PIECE)
            except (OSError, http.client.HTTPException):
                # the upstream broke off: so does the body, and the client sees it short
                self._drop_upstream()
                self.close_connection = True
                return
            if not piece:
                break
            # a client that went away raises here, and its handler ends
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if response.chunked
                             else piece)
        if response.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _refuse(self) -> None:
        self._error(503, "ServiceUnavailable",
                    "Service is unable to handle request (s3_fault_proxy is down).")

    def _error(self, status: int, code: str, message: str) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{html.escape(message, quote=False)}</Message>"
                f"<RequestId>{request_id}</RequestId></Error>").encode()
        self.send_response_only(status)
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
