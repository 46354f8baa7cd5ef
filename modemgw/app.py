"""`create_app(daemon)`: the Flask application (API, web UI and metrics register here). Nothing opens at import."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

# Every response: never framed (clickjacking), no MIME sniffing, no full URLs leaked to other sites, and pages that
# load only their own scripts, styles and images (the web UI has no inline script or style).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Headers by which a proxy tells who its client is; from any other peer they are dropped unread.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
                 "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED")


class IdConverter(IntegerConverter):
    """Row ids in URLs. One larger than SQLite can hold names no row: it becomes -1, which is not found."""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= 2**63 - 1 else -1


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it (`192.0.2.1`, `192.0.2.1:5000`, `[2001:db8::1]:5000`, `2001:db8::1`), an
    IPv4-mapped IPv6 address as IPv4; None when it is none."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


class TrustedProxies:
    """WSGI middleware: the client's address and scheme from X-Forwarded-For and X-Forwarded-Proto when, and only
    when, the peer is one of `networks` (`[http] trusted_proxies`). werkzeug's ProxyFix would believe whoever
    connects. X-Forwarded-For is read from its end: trusted proxies are passed over, the first other address is
    the client. Any peer's proxy headers are removed after that, so that nothing downstream reads a claim."""

    def __init__(self, app, networks=()):
        self.app = app
        self.networks = tuple(networks)

    def trusted(self, address) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer, forwarded_for: str):
        """The client's address: the nearest address in X-Forwarded-For that is no trusted proxy."""
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop)
            if address is None:  # garbage: believe nothing further along
                break
            client = address
            if not self.trusted(address):
                break
        return client

    def __call__(self, environ, start_response):
        peer = _address(environ.get("REMOTE_ADDR", ""))
        if self.networks and self.trusted(peer):
            environ["REMOTE_ADDR"] = str(self.client(peer, environ.get("HTTP_X_FORWARDED_FOR", "")))
            scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
        for name in PROXY_HEADERS:
            environ.pop(name, None)
        return self.app(environ, start_response)


# Paths that programs read: their errors answer problem+json (modemgw.api's handlers). An error on any other path is
# a page of the web UI (webui.error_page_for), so that a person never meets JSON or a traceback.
MACHINE_PATHS = ("/send", "/metrics", "/health", "/openapi.json")


def is_machine_path(path: str) -> bool:
    """Whether an error on `path` answers problem+json (the API, /send, /metrics, /health, /openapi.json)."""
    return path == "/api" or path.startswith("/api/") or path.rstrip("/") in MACHINE_PATHS


def _errors_by_path(app: Flask, page: Callable[[BaseException], Any]) -> None:
    """Make the app's catch-all handlers (HTTPException, Exception: modemgw.api.register_errors's) look at the path
    first: problem+json as before on machine paths, `page(error)` (an HTML page) on every other. Flask picks a
    handler by the error's class alone, and a 404 or 405 on a path no view matched reaches no blueprint's handler,
    so this is the one place that can tell them apart. Errors inside the UI's own views meet its blueprint's
    handler first (webui)."""
    handlers = app.error_handler_spec[None][None]
    for kind in (HTTPException, Exception):
        answer_problem = handlers[kind]

        def by_path(error: BaseException, answer_problem: Callable = answer_problem):
            return answer_problem(error) if is_machine_path(request.path) else page(error)

        app.register_error_handler(kind, by_path)


def security_headers(response):
    """The headers of SECURITY_HEADERS on every response (unless a view set its own)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class LentConnections:
    """WSGI middleware: each request uses a database connection of the store's pool (`Store.lent`) until its answer
    is sent (a streamed CSV export too: waitress iterates and closes the answer in the request's thread), so the
    HTTP threads share a few warm connections instead of keeping one each (~1 MB apiece)."""

    def __init__(self, app: Any, store: Any):
        self.app, self.store = app, store

    def __call__(self, environ: dict, start_response: Any) -> Any:
        scope = self.store.lent()
        scope.__enter__()
        try:
            answer = self.app(environ, start_response)
        except BaseException:
            scope.__exit__(None, None, None)
            raise
        return _Closing(answer, lambda: scope.__exit__(None, None, None))


class _Closing:
    """A WSGI answer that runs `done` when the server closes it, even when the answer's own close() raises (a
    teardown function's error must not leave the request's connection lent to its thread for good)."""

    def __init__(self, answer: Any, done: Callable[[], Any]):
        self.answer, self.done = answer, done

    def __iter__(self) -> Any:
        return iter(self.answer)

    def close(self) -> None:
        try:
            close = getattr(self.answer, "close", None)
            if close is not None:
                close()
        finally:
            self.done()


def preload() -> None:
    """Import what `create_app` imports lazily (the API, the web UI, metrics, the OpenAPI document), so a daemon that
    freezes start-up's objects (`memory.settle`) freezes these modules too rather than leaving them to the collector."""
    import importlib

    for module in ("modemgw.api", "modemgw.auth", "webui", "modemgw.metrics", "modemgw.openapi"):
        importlib.import_module(module)


def create_app(daemon: Any = None, test_config: dict | None = None) -> Flask:
    """The WSGI application over a running `Daemon` (its gateway, store and pool)."""
    from modemgw.api import api, compat, register_errors
    from modemgw.auth import Authenticator

    app = Flask("modemgw")
    app.url_map.converters["id"] = IdConverter
    app.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024)  # 10,000 recipients with fields fit easily
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # fields in the order the API documents them
    if test_config:
        app.config.update(test_config)
    # the daemon's waitress must pass X-Forwarded-* through (clear_untrusted_proxy_headers=False): this decides
    app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]  # Flask's documented way to wrap its WSGI app
        app.wsgi_app, getattr(getattr(daemon, "config", None), "trusted_proxies", ()))
    if daemon is not None:
        app.wsgi_app = LentConnections(app.wsgi_app, daemon.store)  # type: ignore[method-assign]
    app.after_request(security_headers)
    app.extensions["modemgw"] = daemon
    if daemon is not None:
        app.extensions["modemgw.auth"] = Authenticator(daemon.store)
    app.register_blueprint(api)
    app.register_blueprint(compat)
    register_errors(app)
    if daemon is not None:
        import webui

        webui.init_app(app, daemon)
        _errors_by_path(app, webui.error_page_for)

    if daemon is not None:
        from modemgw.metrics import Metrics

        metrics = Metrics(daemon)
        daemon.pool.observe_send = metrics.send_seconds.observe

        def prometheus():
            """Prometheus text format; open like most exporters on a LAN unless `[http] metrics_auth = true`."""
            return metrics.render(), 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}

        if getattr(daemon.config, "metrics_auth", False):
            from modemgw.api import requires

            prometheus = requires("read")(prometheus)  # a bearer key with the read scope (bearer_token in Prometheus)
        app.add_url_rule("/metrics", "prometheus", prometheus, methods=["GET"])
        if getattr(daemon.config, "secure_cookies", False):
            app.config["SESSION_COOKIE_SECURE"] = True  # behind a TLS proxy: the cookie never travels in clear

    @app.get("/openapi.json")
    def openapi():
        from modemgw.openapi import document

        return document()

    @app.get("/health")
    def health():
        """Liveness, a modem summary and the database's health; no authentication, so load balancers and
        monitors can ask. 503 when no modem is online or the database cannot take writes (full, locked, ...)."""
        if daemon is None:
            return jsonify(status="starting"), 503
        from modemgw.api import _iso
        from modemgw.store import StoreError

        modems = daemon.pool.status()
        online = sum(1 for modem in modems if modem["state"] in ("ready", "busy"))
        database = daemon.store.health()
        if database["last_write_failure"]:
            database["last_write_failure"]["at"] = _iso(database["last_write_failure"]["at"])
        try:
            queue = daemon.store.queue_depth()
        except StoreError:
            queue = None
        healthy = online and database["status"] == "ok"
        body = {"status": "ok" if healthy else "degraded", "modems": {"total": len(modems), "online": online},
                "queue": queue, "database": database}
        return jsonify(body), 200 if healthy else 503

    return app
