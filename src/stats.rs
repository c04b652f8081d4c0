//! The server's counts as the stats endpoint serves them: what one shard holds
//! ([`ShardCounts`], taken on demand from its engine and Socket.IO state), and the report the
//! endpoint answers, `{"total":{...},"shards":[{...},...]}`. `loadtest` and the tests read those
//! keys: a field's name is its key, in the order listed.
//!
//! Plain data: it must not depend on the async runtime, `net`, the bus or the shard, which
//! gathers the counts from every shard and routes the request here.

use std::ops::AddAssign;

use serde::Serialize;

use crate::engine::EngineCounts;
use crate::socketio::SocketIoCounts;

/// Declares [`ShardCounts`] and its sum from one list, so that a count added here is
/// serialised and summed without being named again.
macro_rules! shard_counts {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        /// What one shard holds; summed over shards for the report's total.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub(crate) struct ShardCounts {
            $($(#[$doc])* pub(crate) $field: $ty,)*
        }

        impl AddAssign for ShardCounts {
            fn add_assign(&mut self, other: ShardCounts) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

shard_counts! {
    /// Engine.IO sessions.
    sessions: usize,
    /// WebSocket connections (a session's, or a probe's).
    websockets: usize,
    /// Pending engine deadlines of live sessions.
    engine_timers: usize,
    /// Sessions closed by the slow-consumer policy since the shard started.
    slow_consumers_disconnected: u64,
    /// Packets dropped by the slow-consumer policy since the shard started.
    slow_consumer_packets_dropped: u64,
    /// Engine.IO sessions known to Socket.IO.
    clients: usize,
    /// Sockets (a client's connection to one namespace).
    sockets: usize,
    /// Rooms with members, every namespace's.
    rooms: usize,
    /// Pending Socket.IO deadlines (connect, ack, aggregate).
    socketio_timers: usize,
    /// HTTP requests read and not yet answered (the stats request itself is one).
    http_requests: usize,
}

impl ShardCounts {
    /// One shard's counts from its layers' own.
    pub(crate) fn new(
        engine: EngineCounts,
        io: SocketIoCounts,
        http_requests: usize,
    ) -> ShardCounts {
        ShardCounts {
            sessions: engine.sessions,
            websockets: engine.websockets,
            engine_timers: engine.timers,
            slow_consumers_disconnected: engine.slow_consumers.disconnected,
            slow_consumer_packets_dropped: engine.slow_consumers.dropped,
            clients: io.clients,
            sockets: io.sockets,
            rooms: io.rooms,
            socketio_timers: io.timers,
            http_requests,
        }
    }
}

/// What the stats endpoint answers: every shard's counts, in shard order, and their sum.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    total: ShardCounts,
    shards: Vec<ShardCounts>,
    /// The Redis adapter's state, when the process is part of a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<ClusterCounts>,
}

/// The Redis adapter's state (`"redis"` in the report): the link to Redis and what this node
/// made of the messages it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ClusterCounts {
    /// Both connections to Redis are up.
    pub(crate) connected: bool,
    /// Times the link came back after an outage.
    pub(crate) reconnects: u64,
    /// Broadcasts published (acknowledged by Redis).
    pub(crate) published: u64,
    /// Publishes dropped: the bounded queue was full (Redis down or slow).
    pub(crate) publish_dropped: u64,
    /// Publishes Redis refused or did not acknowledge in time.
    pub(crate) publish_failed: u64,
    /// Messages received from Redis.
    pub(crate) received: u64,
    /// Messages from Redis dropped: malformed, unknown, oversized, or missed.
    pub(crate) dropped: u64,
    /// Publishes waiting for Redis now.
    pub(crate) queued: u64,
    /// Questions to the other nodes (fetch, all rooms, broadcast acks, server-side emits) that
    /// were not fully answered within their timeout.
    pub(crate) request_timeouts: u64,
}

impl Report {
    pub(crate) fn new(shards: Vec<ShardCounts>) -> Report {
        let mut total = ShardCounts::default();
        for counts in &shards {
            total += *counts;
        }
        Report {
            total,
            shards,
            redis: None,
        }
    }

    /// Adds the Redis adapter's state.
    pub(crate) fn with_cluster(mut self, counts: ClusterCounts) -> Report {
        self.redis = Some(counts);
        self
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Integers in structs: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SlowConsumerCounts;

    #[test]
    fn the_report_keeps_its_keys_and_shape() {
        let engine = EngineCounts {
            sessions: 1,
            websockets: 2,
            timers: 3,
            slow_consumers: SlowConsumerCounts {
                disconnected: 4,
                dropped: 5,
            },
        };
        let io = SocketIoCounts {
            clients: 6,
            sockets: 7,
            rooms: 8,
            timers: 9,
        };
        let one = ShardCounts::new(engine, io, 10);
        let report = Report::new(vec![one, ShardCounts::default(), one]);
        let counts = |n: u64| {
            let keys = [
                "sessions",
                "websockets",
                "engine_timers",
                "slow_consumers_disconnected",
                "slow_consumer_packets_dropped",
                "clients",
                "sockets",
                "rooms",
                "socketio_timers",
                "http_requests",
            ];
            let fields: Vec<_> = (1..)
                .zip(keys)
                .map(|(value, key)| format!(r#""{key}":{}"#, value * n))
                .collect();
            format!("{{{}}}", fields.join(","))
        };
        let expected = format!(
            r#"{{"total":{},"shards":[{},{},{}]}}"#,
            counts(2),
            counts(1),
            counts(0),
            counts(1)
        );
        assert_eq!(String::from_utf8(report.to_json()).unwrap(), expected);
    }
}
