//! The HTTP API's seam in the shard: every shard serves the API on its own SO_REUSEPORT
//! listener, with a router that the control module's factory builds from an [`ApiShard`], the
//! little of the shard an API needs (operators for served namespaces, the namespaces, the
//! cluster link's state, shard-local tasks, node-wide socket counts). The factory names only
//! this type and `net`'s route types, never the shard's internals.

use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use super::Shard;
use crate::key::ShardId;
use crate::net;
use crate::socketio::{BroadcastOperator, LocalTask};

/// Builds one shard's API router; called once on each shard as it starts.
pub(crate) type ApiRouterFactory = dyn Fn(ApiShard) -> net::Router + Send + Sync;

/// The API listeners (one per shard, bound by `ServerBuilder::start`) and the router factory.
pub(crate) struct ApiPlan {
    listeners: Mutex<Vec<Option<std::net::TcpListener>>>,
    factory: Arc<ApiRouterFactory>,
}

impl ApiPlan {
    pub(crate) fn new(
        listeners: Vec<std::net::TcpListener>,
        factory: Arc<ApiRouterFactory>,
    ) -> ApiPlan {
        ApiPlan {
            listeners: Mutex::new(listeners.into_iter().map(Some).collect()),
            factory,
        }
    }

    /// Shard `id`'s listener, once.
    pub(super) fn take(&self, id: ShardId) -> Option<std::net::TcpListener> {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.get_mut(id.index()).and_then(Option::take)
    }

    /// Shard `shard`'s API router.
    pub(super) fn router(&self, shard: &Rc<Shard>) -> net::Router {
        (self.factory)(ApiShard {
            shard: shard.clone(),
        })
    }
}

/// What an API handler may use of the shard it runs on. Shard-local (`Rc`), like every handle.
#[derive(Clone)]
pub(crate) struct ApiShard {
    shard: Rc<Shard>,
}

impl ApiShard {
    /// This shard's index.
    pub(crate) fn id(&self) -> ShardId {
        self.shard.id
    }

    /// How many shards the process runs.
    pub(crate) fn shards(&self) -> u16 {
        self.shard.shards
    }

    /// The largest message a client may be sent or send (`EngineConfig::max_payload`): the
    /// bound of an event's arguments.
    pub(crate) fn max_payload(&self) -> usize {
        self.shard.plan.config.engine.max_payload
    }

    /// Whether namespace `nsp` is served (declared, or admitted by a dynamic pattern).
    pub(crate) fn serves(&self, nsp: &str) -> bool {
        self.shard.plan.namespaces.resolve(nsp).is_some()
    }

    /// An operator on namespace `nsp` run from this shard; `None` if it is not served.
    pub(crate) fn of(&self, nsp: &str) -> Option<BroadcastOperator> {
        self.serves(nsp).then(|| self.shard.io.of(nsp))
    }

    /// The declared namespaces and the dynamic ones this shard has created, sorted.
    pub(crate) fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shard
            .plan
            .namespaces
            .declared
            .keys()
            .map(|name| name.to_string())
            .collect();
        let created = self.shard.io.traffic().sockets_per_namespace;
        names.extend(created.into_iter().map(|(name, _)| name.to_string()));
        names.sort_unstable();
        names.dedup();
        names
    }

    /// `None` without a cluster; else whether the link to Redis is up now.
    pub(crate) fn cluster_connected(&self) -> Option<bool> {
        let cluster = self.shard.plan.cluster.as_ref()?;
        Some(cluster.link().counts().connected)
    }

    /// Whether a graceful shutdown has begun.
    pub(crate) fn draining(&self) -> bool {
        self.shard.draining.get().is_some()
    }

    /// Runs `task` on this shard, which sets the tick's time before each of its steps and
    /// flushes (and re-arms its timer) after each: operations started from an API request
    /// must run this way, as a handler's would.
    pub(crate) fn spawn(&self, task: LocalTask) {
        self.shard.io.spawn(task);
    }

    /// Sockets per namespace on every shard of this process (asked over the bus, bounded by
    /// the stats endpoint's deadline).
    pub(crate) fn socket_counts(&self) -> impl Future<Output = Vec<(String, usize)>> + 'static {
        let snapshots = self.shard.gather_snapshots();
        async move {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for snapshot in snapshots.await {
                for (name, count) in snapshot.io.sockets_per_namespace {
                    match counts.iter_mut().find(|(n, _)| **n == *name) {
                        Some((_, total)) => *total += count,
                        None => counts.push((name.to_string(), count)),
                    }
                }
            }
            counts.sort_unstable();
            counts
        }
    }
}
