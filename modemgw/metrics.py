"""Prometheus metrics at `/metrics`: per-modem counters and signal, queue depth, webhook backlog, send latency."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class GatewayCollector:
    """Reads the gateway (its modems, with what their workers say now) at scrape time, so nothing is counted
    twice or kept in step by hand."""

    def __init__(self, daemon: Any):
        self.daemon = daemon

    def collect(self):
        gateway = self.daemon.gateway
        counters = {name: CounterMetricFamily(f"modemgw_messages_{name}", f"Messages {name} through the modem",
                                              labels=["modem"]) for name in ("sent", "failed", "delivered")}
        signal = GaugeMetricFamily("modemgw_modem_signal_dbm", "Signal strength at the last health check",
                                   labels=["modem"])
        up = GaugeMetricFamily("modemgw_modem_up", "1 when the modem is online", labels=["modem"])
        for row in gateway.modems_now():
            label = row["label"] or str(row["id"])
            for name in counters:
                counters[name].add_metric([label], row[f"{name}_total"])
            if row["signal_dbm"] is not None:
                signal.add_metric([label], row["signal_dbm"])
            up.add_metric([label], 1 if row["online"] else 0)
        yield from counters.values()
        yield signal
        yield up
        statuses = GaugeMetricFamily("modemgw_messages", "Messages by status", labels=["status"])
        for status, count in gateway.status_counts().items():
            statuses.add_metric([status], count)
        yield statuses
        yield GaugeMetricFamily("modemgw_queue_depth", "Messages waiting to be sent", value=gateway.queue_depth())
        yield GaugeMetricFamily("modemgw_webhook_backlog", "Webhook deliveries waiting",
                                value=self.daemon.webhooks.backlog())
        smpp = getattr(self.daemon, "smpp", None)
        if smpp is not None:
            yield from smpp_metrics(smpp.metrics())


def smpp_metrics(numbers: dict) -> list:
    """The SMPP server's sessions, submits, deliver_sm and durable queue (`SmppServer.metrics()`)."""
    sessions = GaugeMetricFamily("modemgw_smpp_sessions", "SMPP sessions by system_id and bind type",
                                 labels=["system_id", "bind"])
    for (system_id, bind), count in sorted(numbers["sessions"].items()):
        sessions.add_metric([system_id, bind], count)
    submits = CounterMetricFamily("modemgw_smpp_submits", "submit_sm by outcome (accepted, refused, throttled: "
                                                          "ESME_RTHROTTLED, window_full: ESME_RMSGQFUL)",
                                  labels=["result"])
    for result, count in sorted(numbers["submits"].items()):
        submits.add_metric([result], count)
    delivers = CounterMetricFamily("modemgw_smpp_deliver_sm", "deliver_sm (receipts and inbound SMS) by the "
                                                              "client's answer", labels=["result"])
    for result, count in sorted(numbers["deliver_sm"].items()):
        delivers.add_metric([result], count)
    queued = CounterMetricFamily("modemgw_smpp_queued", "deliver_sm queued durably, by kind", labels=["kind"])
    for kind, count in sorted(numbers["queued"].items()):
        queued.add_metric([kind], count)
    pending = GaugeMetricFamily("modemgw_smpp_pending", "deliver_sm waiting for a receiver, by system_id and kind",
                                labels=["system_id", "kind"])
    for (system_id, kind), count in sorted(numbers["pending"].items()):
        pending.add_metric([system_id, kind], count)
    return [sessions, submits, delivers, queued, pending]


class Metrics:
    def __init__(self, daemon: Any):
        self.registry = CollectorRegistry()
        self.registry.register(GatewayCollector(daemon))
        self.send_seconds = Histogram("modemgw_send_seconds", "From AT+CMGS to the modem's +CMGS, per part",
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
