//! The metrics route's Prometheus text exposition: every shard's [`ShardMetrics`] (its stats
//! counts, its engine's and Socket.IO layer's traffic counters, its event loop's lag), summed
//! or labelled by shard, plus the Redis adapter's state, written by `prometheus-client`
//! (HELP and TYPE lines, label escaping, number formats, `# EOF`).
//!
//! Plain data and an encoder: it must not depend on the async runtime, `net`, the bus or the
//! shard, which gathers the snapshots over the bus and serves the text through a route. The
//! counters it reads are plain fields each shard bumps on its own thread; nothing here is
//! touched per message.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::engine::EngineTraffic;
use crate::histogram::Histogram;
use crate::socketio::SocketIoTraffic;
use crate::stats::{ClusterCounts, ShardCounts};

/// The media type of the OpenMetrics text `prometheus-client` writes, served to a scraper
/// that asks for it (Prometheus does).
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of Prometheus's classic text format, served to everyone else (`curl`,
/// `promtool check metrics`, older scrapers).
pub(crate) const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one shard answers a scrape with: taken on its own thread, sent over the bus.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardMetrics {
    /// The stats endpoint's counts (sessions, sockets, rooms, slow consumers...).
    pub(crate) counts: ShardCounts,
    /// Engine.IO packets, bytes, refused handshakes, sessions by transport.
    pub(crate) engine: EngineTraffic,
    /// Broadcasts, deliveries, ack round trips, sockets per namespace.
    pub(crate) io: SocketIoTraffic,
    /// How late the shard's timer task woke after its deadline.
    pub(crate) loop_lag: Histogram,
}

/// A whole scrape: every shard's snapshot in shard order, the Redis adapter's state when
/// the process is part of a cluster, and the counters of the layers above the shards.
#[derive(Debug)]
pub(crate) struct Exposition {
    pub(crate) shards: Vec<ShardMetrics>,
    pub(crate) cluster: Option<ClusterCounts>,
    pub(crate) families: Vec<Family>,
}

/// A metric family counted above the shards (the control plane's API requests, auth failures,
/// backend calls): its name without the `ringcast_` prefix (and a counter's `_total`), its
/// help, and one value per label set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) series: Series,
}

/// A label set: (name, value) pairs.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// A family's values, by kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Series {
    Counters(Vec<(Labels, u64)>),
    Gauges(Vec<(Labels, u64)>),
    Histograms(Vec<(Labels, Histogram)>),
}

/// What a scrape asks for those families.
pub(crate) type FamilySource = dyn Fn() -> Vec<Family> + Send + Sync;

impl Exposition {
    /// The text a scrape answers and its media type: OpenMetrics when the scraper's `Accept`
    /// names it, the classic text format otherwise.
    pub(crate) fn encode_for(self, accept: Option<&str>) -> (&'static str, String) {
        let text = self.encode();
        if accept.is_some_and(|accept| accept.contains("application/openmetrics-text")) {
            (OPENMETRICS, text)
        } else {
            (CLASSIC, classic(&text))
        }
    }

    /// The OpenMetrics text.
    pub(crate) fn encode(self) -> String {
        let mut registry = Registry::with_prefix("ringcast");
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing into a String fails only if a collector fails, and ours write into it.
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            text.clear();
        }
        text
    }
}

/// OpenMetrics text as Prometheus's classic text format, for what `prometheus-client` writes
/// (no units, exemplars, info or state sets here): a counter's family is named with its
/// `_total` in `# HELP` and `# TYPE`, as its samples already are, and there is no `# EOF`.
/// Classic parsers (promtool's among them) otherwise see samples of a family never declared.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let family = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then_some((prefix, name, tail))
        });
        match family {
            Some((prefix, name, tail)) => {
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// One metric family with no labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    single(encoder, name, help, &ConstCounter::new(value))
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    single(encoder, name, help, &ConstGauge::new(value))
}

/// One metric family of several label sets, each with its value.
fn labelled<'a, M: EncodeMetric + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Vec<(&'a str, String)>, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram family, its observations summed over `histograms` or one series per label set.
fn histograms<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Option<Vec<(&'a str, String)>>, Histogram)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in series {
        let buckets = histogram.buckets();
        let (sum, count) = (histogram.sum_seconds(), histogram.count());
        match labels {
            Some(labels) => family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?,
            None => family.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?,
        }
    }
    Ok(())
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        for family in &self.families {
            let (name, help) = (family.name, family.help);
            match &family.series {
                Series::Counters(series) => {
                    let series = series
                        .iter()
                        .map(|(labels, value)| (labels.clone(), ConstCounter::new(*value)));
                    labelled(e, name, help, MetricType::Counter, series)?;
                }
                Series::Gauges(series) => {
                    let series = series
                        .iter()
                        .map(|(labels, value)| (labels.clone(), ConstGauge::new(*value)));
                    labelled(e, name, help, MetricType::Gauge, series)?;
                }
                Series::Histograms(series) => {
                    let series = series
                        .iter()
                        .map(|(labels, histogram)| (Some(labels.clone()), *histogram));
                    histograms(e, name, help, series)?;
                }
            }
        }
        let mut counts = ShardCounts::default();
        let mut engine = EngineTraffic::default();
        let mut io = SocketIoTraffic::default();
        let mut namespaces: Vec<(std::sync::Arc<str>, usize)> = Vec::new();
        for shard in &self.shards {
            counts += shard.counts;
            let traffic = &shard.engine;
            engine.packets_in += traffic.packets_in;
            engine.bytes_in += traffic.bytes_in;
            engine.packets_out += traffic.packets_out;
            engine.bytes_out += traffic.bytes_out;
            engine.compressed_out += traffic.compressed_out;
            engine.refused.shutting_down += traffic.refused.shutting_down;
            engine.refused.session_limit += traffic.refused.session_limit;
            engine.refused.handshake_rate += traffic.refused.handshake_rate;
            engine.refused.unsupported_protocol += traffic.refused.unsupported_protocol;
            engine.refused.unknown_transport += traffic.refused.unknown_transport;
            engine.refused.bad_request += traffic.refused.bad_request;
            for (sums, shard) in engine
                .sessions_by_transport
                .iter_mut()
                .zip(traffic.sessions_by_transport)
            {
                for (sum, count) in sums.iter_mut().zip(shard) {
                    *sum += count;
                }
            }
            io.broadcasts_local += shard.io.broadcasts_local;
            io.broadcasts_cross_shard += shard.io.broadcasts_cross_shard;
            io.broadcasts_remote += shard.io.broadcasts_remote;
            io.deliveries += shard.io.deliveries;
            io.ack_round_trip.add(&shard.io.ack_round_trip);
            for (name, sockets) in &shard.io.sockets_per_namespace {
                match namespaces.iter_mut().find(|(known, _)| known == name) {
                    Some((_, sum)) => *sum += sockets,
                    None => namespaces.push((name.clone(), *sockets)),
                }
            }
        }

        let by_transport =
            [("polling", 0), ("websocket", 1)]
                .into_iter()
                .flat_map(|(transport, t)| {
                    [("3", 0), ("4", 1)].into_iter().map(move |(protocol, p)| {
                        (
                            vec![
                                ("transport", transport.to_owned()),
                                ("protocol", protocol.to_owned()),
                            ],
                            ConstGauge::new(engine.sessions_by_transport[t][p] as u64),
                        )
                    })
                });
        labelled(
            e,
            "engineio_connections",
            "Engine.IO sessions open, by transport and protocol version (a session probing a WebSocket is still polling).",
            MetricType::Gauge,
            by_transport,
        )?;
        gauge(
            e,
            "websocket_connections",
            "WebSocket connections open (a session's, or an upgrade probe's).",
            counts.websockets as u64,
        )?;
        gauge(
            e,
            "socketio_clients",
            "Engine.IO sessions known to Socket.IO.",
            counts.clients as u64,
        )?;
        labelled(
            e,
            "socketio_sockets",
            "Socket.IO sockets connected, by namespace.",
            MetricType::Gauge,
            namespaces.iter().map(|(name, sockets)| {
                (
                    vec![("namespace", name.to_string())],
                    ConstGauge::new(*sockets as u64),
                )
            }),
        )?;
        gauge(
            e,
            "socketio_rooms",
            "Rooms with members, every namespace's on every shard (each socket's own room included).",
            counts.rooms as u64,
        )?;
        labelled(
            e,
            "handshakes_refused",
            "Engine.IO handshakes refused, by reason.",
            MetricType::Counter,
            [
                ("shutting_down", engine.refused.shutting_down),
                ("session_limit", engine.refused.session_limit),
                ("handshake_rate", engine.refused.handshake_rate),
                ("unsupported_protocol", engine.refused.unsupported_protocol),
                ("unknown_transport", engine.refused.unknown_transport),
                ("bad_request", engine.refused.bad_request),
            ]
            .map(|(reason, value)| {
                (
                    vec![("reason", reason.to_owned())],
                    ConstCounter::new(value),
                )
            }),
        )?;
        counter(
            e,
            "received_packets",
            "Engine.IO message packets received from clients.",
            engine.packets_in,
        )?;
        counter(
            e,
            "received_bytes",
            "Payload bytes of the Engine.IO message packets received from clients.",
            engine.bytes_in,
        )?;
        counter(
            e,
            "sent_packets",
            "Packets queued for clients (a broadcast counts once per recipient).",
            engine.packets_out,
        )?;
        counter(
            e,
            "sent_bytes",
            "Bytes queued for clients: WebSocket frames, or polling packets' payloads.",
            engine.bytes_out,
        )?;
        counter(
            e,
            "sent_compressed_packets",
            "Of the packets queued for clients, those sent compressed (permessage-deflate).",
            engine.compressed_out,
        )?;
        labelled(
            e,
            "broadcasts",
            "Broadcasts delivered on a shard, by where they came from: a handler or operator on that shard (local), another shard (shard), another node through Redis (redis).",
            MetricType::Counter,
            [
                ("local", io.broadcasts_local),
                ("shard", io.broadcasts_cross_shard),
                ("redis", io.broadcasts_remote),
            ]
            .map(|(origin, value)| (vec![("origin", origin.to_owned())], ConstCounter::new(value))),
        )?;
        counter(
            e,
            "broadcast_deliveries",
            "Broadcast packets handed to recipients (one per recipient).",
            io.deliveries,
        )?;
        counter(
            e,
            "slow_consumer_disconnects",
            "Clients disconnected because their outbound queue was full.",
            counts.slow_consumers_disconnected,
        )?;
        counter(
            e,
            "slow_consumer_drops",
            "Packets dropped because their client's outbound queue was full (--slow-consumer drop).",
            counts.slow_consumer_packets_dropped,
        )?;
        histograms(
            e,
            "ack_round_trip_seconds",
            "From a server emit with ack (to one socket, or a broadcast's to each recipient) to the client's answer.",
            [(None, io.ack_round_trip)],
        )?;
        histograms(
            e,
            "event_loop_lag_seconds",
            "How late each shard's timer task woke after its deadline, by shard.",
            self.shards
                .iter()
                .enumerate()
                .map(|(index, shard)| (Some(vec![("shard", index.to_string())]), shard.loop_lag)),
        )?;
        gauge(
            e,
            "http_requests_in_flight",
            "HTTP requests read and not yet answered (the scrape itself is one).",
            counts.http_requests as u64,
        )?;
        if let Some(redis) = self.cluster {
            gauge(
                e,
                "redis_connected",
                "1 while both connections to Redis are up.",
                u64::from(redis.connected),
            )?;
            counter(
                e,
                "redis_reconnects",
                "Times the link to Redis came back after an outage.",
                redis.reconnects,
            )?;
            counter(
                e,
                "redis_published",
                "Messages published to Redis (acknowledged).",
                redis.published,
            )?;
            counter(
                e,
                "redis_publish_dropped",
                "Publishes dropped because the bounded queue was full (Redis down or slow).",
                redis.publish_dropped,
            )?;
            counter(
                e,
                "redis_publish_failed",
                "Publishes Redis refused or did not acknowledge in time.",
                redis.publish_failed,
            )?;
            counter(
                e,
                "redis_received",
                "Messages received from Redis.",
                redis.received,
            )?;
            counter(
                e,
                "redis_received_dropped",
                "Messages from Redis dropped: malformed, unknown, oversized, or missed.",
                redis.dropped,
            )?;
            gauge(
                e,
                "redis_queued",
                "Publishes waiting for Redis now.",
                redis.queued,
            )?;
            counter(
                e,
                "redis_request_timeouts",
                "Questions to the other nodes not fully answered within their timeout.",
                redis.request_timeouts,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shards_are_summed_and_lag_is_per_shard() {
        let mut one = ShardMetrics::default();
        one.engine.packets_in = 3;
        one.engine.sessions_by_transport[1][1] = 2;
        one.io.broadcasts_remote = 1;
        one.io.sockets_per_namespace = vec![("/".into(), 2), ("/chat".into(), 1)];
        one.loop_lag.observe(Duration::from_micros(50));
        let text = Exposition {
            shards: vec![one.clone(), one],
            cluster: Some(ClusterCounts::default()),
            families: vec![Family {
                name: "auth_failures",
                help: "CONNECTs refused by the token check, by code.",
                series: Series::Counters(vec![(vec![("code", "token_expired".to_owned())], 4)]),
            }],
        }
        .encode();
        for line in [
            "ringcast_auth_failures_total{code=\"token_expired\"} 4",
            "# TYPE ringcast_received_packets counter",
            "ringcast_received_packets_total 6",
            "ringcast_engineio_connections{transport=\"websocket\",protocol=\"4\"} 4",
            "ringcast_socketio_sockets{namespace=\"/chat\"} 2",
            "ringcast_broadcasts_total{origin=\"redis\"} 2",
            "ringcast_event_loop_lag_seconds_bucket{le=\"0.0001\",shard=\"1\"} 1",
            "ringcast_redis_connected 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        let classic = classic(&text);
        for line in [
            "# HELP ringcast_received_packets_total Engine.IO message packets received from clients.",
            "# TYPE ringcast_received_packets_total counter",
            "ringcast_received_packets_total 6",
            "# TYPE ringcast_redis_connected gauge",
            "ringcast_event_loop_lag_seconds_bucket{le=\"+Inf\",shard=\"1\"} 1",
        ] {
            assert!(classic.lines().any(|l| l == line), "{line} missing from:\n{classic}");
        }
        assert!(!classic.contains("# EOF"));
    }
}
