"""`App`: routes -> handlers on Python's `ThreadingHTTPServer`, bound to loopback by default.

Why the standard library: the pages are a handful of forms and one JSON endpoint for a single
local rater; no framework start-up, nothing to install, and tests start it in a thread in
milliseconds. A route is `(method, pattern)` with `{name}` placeholders; a handler takes a
`Request` and returns a `Response`. Errors become JSON or plain-text 4xx/5xx replies that never
echo the submitted text.

The pages have no login and bind to loopback, so two checks keep other web sites out: a server on
a loopback address answers only requests whose Host is a loopback name (a DNS-rebinding page
would send its own host name), and a POST whose Origin is not this server's is refused (another
site's form or fetch cannot change rankings or training data).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class HTTPError(Exception):
    """Raised by a handler to answer with `status` and a JSON error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    params: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise HTTPError(400, f"request body is not JSON: {err.__class__.__name__}") from err


@dataclass
class Response:
    body: bytes
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def html(cls, text: str, status: int = 200) -> "Response":
        return cls(text.encode("utf-8"), status)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> "Response":
        return cls(json.dumps(data, ensure_ascii=False).encode("utf-8"), status, "application/json; charset=utf-8")

    @classmethod
    def redirect(cls, location: str) -> "Response":
        return cls(b"", 303, headers={"Location": location})


Handler = Callable[[Request], Response]


class App:
    """A route table. `app.route("GET", "/case/{index}")(handler)` registers a handler."""

    def __init__(self, name: str = "empathy-rl"):
        self.name = name
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(handler: Handler) -> Handler:
            self.routes.append((method.upper(), regex, handler))
            return handler

        return register

    def has_route(self, method: str, path: str) -> bool:
        """Whether a handler already answers `method path` (pages sharing an app leave "/" to the first)."""
        return any(m == method.upper() and regex.match(path) for m, regex, _ in self.routes)

    def dispatch(self, method: str, target: str, body: bytes) -> Response:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        allowed = False
        for m, regex, handler in self.routes:
            match = regex.match(parts.path)
            if not match:
                continue
            allowed = True
            if m == method:
                try:
                    return handler(Request(method, parts.path, query, match.groupdict(), body))
                except HTTPError as err:
                    return Response.json({"error": err.message}, err.status)
        if allowed:
            return Response.json({"error": f"method {method} not allowed here"}, 405)
        return Response.json({"error": f"no page at {parts.path}"}, 404)


def _is_loopback_name(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name part of a Host header (`127.0.0.1:8765` -> `127.0.0.1`, `[::1]:80` -> `[::1]`)."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


def refuse_foreign(method: str, host_header: Optional[str], origin: Optional[str], loopback_only: bool) -> Optional[str]:
    """Why a request must be refused (another site's page or a rebound DNS name), or None to serve it."""
    if loopback_only and not _is_loopback_name(_host_name(host_header or "")):
        return "this page answers only loopback host names (127.0.0.1, localhost)"
    if method == "POST" and origin is not None and origin != f"http://{host_header}":
        return "cross-origin request refused"
    return None


def _handler_class(app: App, loopback_only: bool) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        server_version = app.name

        def _run(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            refusal = refuse_foreign(method, self.headers.get("Host"), self.headers.get("Origin"), loopback_only)
            if refusal is not None:
                response = Response.json({"error": refusal}, 403)
            elif length > MAX_BODY_BYTES:
                response = Response.json({"error": f"request body over {MAX_BODY_BYTES} bytes"}, 413)
            else:
                body = self.rfile.read(length) if length else b""
                try:
                    response = app.dispatch(method, self.path, body)
                except Exception as err:  # a bug in a handler: logged by type, never the request text
                    log.error("%s %s failed: %s", method, urlsplit(self.path).path, type(err).__name__)
                    response = Response.json({"error": f"internal error ({type(err).__name__})"}, 500)
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(response.body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._run("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._run("POST")

        def log_message(self, format: str, *args: Any) -> None:  # request lines at DEBUG (paths carry rater names only)
            log.debug("%s - %s", self.address_string(), format % args)

    return _Handler


class Server:
    """A running `App`: `start()` in a background thread (tests) or `serve_forever()` (the CLI)."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0):
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(app, loopback_only=_is_loopback_name(host)))
        self.httpd.daemon_threads = True
        self.thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Server":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="webapp", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)


def serve_until_interrupted(app: App, host: str, port: int, banner: Callable[[str], str],
                            on_close: Optional[Callable[[], None]] = None) -> int:
    """Serve `app` in the foreground until Ctrl-C: how `empathy-rl review` and `rank serve` run.

    Binds first, so `banner` gets the real URL (port 0 picks a free one) and its line is printed
    before the first request; Ctrl-C is the normal way to stop, not an error. The socket is closed
    and `on_close` runs (e.g. closing a store) however serving ends. Returns 0, the exit status.
    """
    server = Server(app, host, port)
    print(banner(server.url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        if on_close is not None:
            on_close()
    return 0
