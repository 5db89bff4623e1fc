"""/metrics of a cluster node: the log's lag per partition, the outbox, and the live members. Values come
from what the node's background tasks last saw (node.py), so a scrape never waits on NATS or the store."""
from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily


class ClusterCollector:
    def __init__(self, node) -> None:
        self.node = node

    def describe(self):
        return []

    def collect(self):
        node = self.node
        lag = GaugeMetricFamily("pipemon_log_consumer_lag", "Messages of the event log not yet acked by a "
                                "worker, by partition", labels=["partition"])
        for n, v in sorted(node.consumer.lag.items()):
            lag.add_metric([str(n)], v)
        yield lag
        view = node.view
        if view.outbox_depth is not None:
            yield GaugeMetricFamily("pipemon_outbox_depth", "Notifications waiting to be delivered",
                                    value=view.outbox_depth)
        if view.oldest_undelivered_s is not None:
            yield GaugeMetricFamily("pipemon_outbox_oldest_undelivered_seconds",
                                    "Age of the oldest notification not delivered yet (0 when none)",
                                    value=view.oldest_undelivered_s)
        live = GaugeMetricFamily("pipemon_cluster_live_nodes", "Live pipemon nodes by role (from their "
                                 "PostgreSQL sessions)", labels=["role"])
        for role, v in sorted(view.live.items()):
            live.add_metric([role], v)
        yield live
        leading = GaugeMetricFamily("pipemon_cluster_leading", "1 where this node leads the role, else 0",
                                    labels=["role"])
        leading.add_metric(["worker"], 1 if node.leads_work() else 0)
        leading.add_metric(["dispatcher"], 1 if node.dispatch_lead.leading else 0)
        yield leading
        if node.partitioned and node.role.works:
            yield GaugeMetricFamily("pipemon_cluster_owned_partitions", "Partitions of the event log "
                                    "this worker owns (writes and evaluates)",
                                    value=len(node.partition_locks.owned))
