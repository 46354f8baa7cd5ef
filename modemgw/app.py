"""`create_app(daemon)`: the Flask application (API, web UI and metrics register here). Nothing opens at import."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.routing import IntegerConverter


class IdConverter(IntegerConverter):
    """Row ids in URLs. One larger than SQLite can hold names no row: it becomes -1, which is not found."""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= 2**63 - 1 else -1


def create_app(daemon: Any = None, test_config: dict | None = None) -> Flask:
    """The WSGI application over a running `Daemon` (its gateway, store and pool)."""
    from modemgw.api import api, compat, register_errors
    from modemgw.auth import Authenticator

    app = Flask("modemgw")
    app.url_map.converters["id"] = IdConverter
    app.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024)  # 10,000 recipients with fields fit easily
    app.json.sort_keys = False
    if test_config:
        app.config.update(test_config)
    app.extensions["modemgw"] = daemon
    if daemon is not None:
        app.extensions["modemgw.auth"] = Authenticator(daemon.store)
    app.register_blueprint(api)
    app.register_blueprint(compat)
    register_errors(app)
    if daemon is not None:
        import webui

        webui.init_app(app, daemon)

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
