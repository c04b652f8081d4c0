//! Lifecycle events and notifications (spec §2.4): what happens to a socket (`connected`,
//! `joined`, `left`, `disconnected` with its reason), notify-mode events, `node.started` and
//! `gap`, delivered at least once and in order per socket.
//!
//! Each shard keeps one queue per endpoint, split into lanes by a hash of the socket id; a
//! lane has one batch in flight (up to `batch_max` events or `batch_bytes`, sent after
//! `batch_interval` or when full). A batch not acknowledged with a 2xx is sent again (same
//! ids, same delivery id) backing off from 250 ms to 10 s for up to `retry_for`, then dropped
//! and reported by a `gap` event that goes first in the lane's next batch; so is what a full
//! queue refuses. A lane with work holds the shard's graceful shutdown (within its grace).
//!
//! Runs on the shards' threads. Must not depend on the engine, the shard or the bus.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::config::LifecycleKind;
use super::envelope::{self, CloudEvent};
use super::{Endpoint, Hooks};
use crate::server::{shard_hold, shard_sleep, shard_spawn};
use crate::socketio::{Args, DisconnectReason, Socket};

/// The first and the longest wait between tries of a batch.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Who made a socket join or leave a room, as `joined` / `left` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinCause {
    Client,
    Action,
    /// Anything else: the HTTP API, another server's operation.
    Api,
}

impl JoinCause {
    fn as_str(self) -> &'static str {
        match self {
            JoinCause::Client => "client",
            JoinCause::Action => "action",
            JoinCause::Api => "api",
        }
    }
}

thread_local! {
    /// Who is joining or leaving now, on this shard.
    static CAUSE: Cell<JoinCause> = const { Cell::new(JoinCause::Api) };
    /// This shard's index, for event ids (set when its observer is made).
    static SHARD: Cell<usize> = const { Cell::new(0) };
    /// This shard's deliveries, by endpoint.
    static DELIVERIES: RefCell<HashMap<usize, Rc<Delivery>>> = RefCell::new(HashMap::new());
}

/// The calling shard's index.
pub(crate) fn shard_index() -> usize {
    SHARD.with(Cell::get)
}

/// Runs `change` (a join or leave) as made by `cause`.
pub(crate) fn joined_by<T>(cause: JoinCause, change: impl FnOnce() -> T) -> T {
    let before = CAUSE.with(|c| c.replace(cause));
    let result = change();
    CAUSE.with(|c| c.set(before));
    result
}

/// What the hooks keep of one socket: its user, its event sequence, when it connected, which
/// lifecycle events its namespace emits, why it is being disconnected (ringcast's own
/// reasons), the rooms it leaves as it disconnects, and its forwarded calls.
pub(crate) struct SocketHooks {
    pub(crate) user: Option<String>,
    seq: Cell<u64>,
    connected_at: Instant,
    kinds: Vec<LifecycleKind>,
    reason: Cell<Option<&'static str>>,
    leaving: RefCell<Vec<String>>,
    pub(crate) queue: RefCell<super::forward::Queue>,
}

impl SocketHooks {
    pub(crate) fn new(user: Option<String>, kinds: Vec<LifecycleKind>) -> SocketHooks {
        SocketHooks {
            user,
            seq: Cell::new(0),
            connected_at: Instant::now(),
            kinds,
            reason: Cell::new(None),
            leaving: RefCell::new(Vec::new()),
            queue: super::forward::queue(),
        }
    }

    /// The next event's sequence number (from 1).
    pub(crate) fn next_seq(&self) -> u64 {
        let next = self.seq.get() + 1;
        self.seq.set(next);
        next
    }

    fn wants(&self, kind: LifecycleKind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// The lifecycle reason of a `ringcast:disconnect` code.
fn reason_of(code: &str) -> Option<&'static str> {
    Some(match code {
        "token_expired" => "token expired",
        "revoked" => "revoked",
        "session_replaced" => "session replaced",
        "api_disconnect" => "api disconnect",
        "rate_limited" => "rate limited",
        "backend" => "backend",
        _ => return None,
    })
}

/// One shard's lifecycle observer.
pub(crate) struct LifecycleObserver {
    hooks: Arc<Hooks>,
    shard: usize,
}

impl LifecycleObserver {
    /// The observer of `shard`; shard 0 announces the boot (`node.started`).
    pub(crate) fn new(hooks: Arc<Hooks>, shard: usize) -> LifecycleObserver {
        SHARD.with(|index| index.set(shard));
        if shard == 0 {
            if let Some(lifecycle) = &hooks.lifecycle {
                let mut data = Map::new();
                data.insert("node".into(), hooks.origin.node.clone().into());
                data.insert("boot_id".into(), hooks.origin.boot_id.clone().into());
                let event = hooks.event(0, "io.ringcast.node.started", None, data);
                push(&hooks, &lifecycle.endpoint, shard, "", event);
            }
        }
        LifecycleObserver { hooks, shard }
    }

    fn state(&self, socket: &Socket) -> Option<Rc<SocketHooks>> {
        self.hooks.lifecycle.as_ref()?;
        socket
            .extension::<crate::control::app::SocketState>()
            .and_then(|state| state.hooks.clone())
    }

    fn emit(
        &self,
        socket: &Socket,
        state: &SocketHooks,
        kind: &'static str,
        extra: Map<String, Value>,
    ) {
        let Some(lifecycle) = &self.hooks.lifecycle else {
            return;
        };
        let mut data = super::about(socket, state.user.as_deref());
        data.insert("seq".into(), state.next_seq().into());
        data.extend(extra);
        let event = self.hooks.event(self.shard, kind, Some(socket.id()), data);
        push(
            &self.hooks,
            &lifecycle.endpoint,
            self.shard,
            socket.id(),
            event,
        );
    }

    /// A `joined` or `left` event, saying who made the change.
    fn room_changed(&self, socket: &Socket, state: &SocketHooks, kind: &'static str, room: &str) {
        let mut data = Map::new();
        data.insert("room".into(), room.into());
        data.insert("by".into(), CAUSE.with(Cell::get).as_str().into());
        self.emit(socket, state, kind, data);
    }
}

impl crate::socketio::Observer for LifecycleObserver {
    fn connected(&self, socket: &Socket) {
        let Some(state) = self.state(socket) else {
            return;
        };
        if !state.wants(LifecycleKind::Connected) {
            return;
        }
        let rooms: Vec<String> = socket
            .rooms()
            .into_iter()
            .filter(|room| room != socket.id())
            .collect();
        let mut data = Map::new();
        data.insert("rooms".into(), rooms.into());
        data.insert("data".into(), socket.data_json());
        data.insert(
            "handshake".into(),
            handshake_object(
                &self.hooks.settings,
                socket.address(),
                socket.transport(),
                |name| socket.query_param(name),
                |name| socket.handshake_header(name),
            ),
        );
        self.emit(socket, &state, "io.ringcast.socket.connected", data);
    }

    fn joined(&self, socket: &Socket, room: &str) {
        let Some(state) = self.state(socket) else {
            return;
        };
        if state.wants(LifecycleKind::Joined) {
            self.room_changed(socket, &state, "io.ringcast.socket.joined", room);
        }
    }

    fn left(&self, socket: &Socket, room: &str) {
        let Some(state) = self.state(socket) else {
            return;
        };
        if !socket.connected() {
            // Leaving as it disconnects: `disconnected` lists these rooms.
            state.leaving.borrow_mut().push(room.to_owned());
            return;
        }
        if state.wants(LifecycleKind::Left) {
            self.room_changed(socket, &state, "io.ringcast.socket.left", room);
        }
    }

    fn event_sent(&self, socket: &Socket, event: &str, args: &Args) {
        if event != "ringcast:disconnect" {
            return;
        }
        let Some(state) = self.state(socket) else {
            return;
        };
        let notice: Option<Value> = serde_json::from_slice(args.json_bytes()).ok();
        let code = notice
            .as_ref()
            .and_then(|notice| notice.get("code"))
            .and_then(Value::as_str)
            .and_then(reason_of);
        if let Some(reason) = code {
            state.reason.set(Some(reason));
        }
    }

    fn watches_recipients(&self, event: &str) -> bool {
        // Ringcast's own disconnects tell their reason with this event first.
        event == "ringcast:disconnect"
    }

    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        let Some(state) = self.state(socket) else {
            return;
        };
        if !state.wants(LifecycleKind::Disconnected) {
            return;
        }
        let reason = state.reason.take().unwrap_or_else(|| reason.as_str());
        let rooms = std::mem::take(&mut *state.leaving.borrow_mut());
        let connected_ms =
            u64::try_from(state.connected_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut data = Map::new();
        data.insert("reason".into(), reason.into());
        data.insert("rooms".into(), rooms.into());
        data.insert("connected_ms".into(), connected_ms.into());
        self.emit(socket, &state, "io.ringcast.socket.disconnected", data);
    }
}

/// A `handshake` object: the address, transport and Engine.IO revision, and the query
/// parameters and headers `[hooks]` forwards (`forward_query`, `forward_headers`).
pub(crate) fn handshake_object(
    settings: &super::config::HooksConfig,
    address: Option<std::net::SocketAddr>,
    transport: Option<&str>,
    query_param: impl Fn(&str) -> Option<String>,
    header: impl Fn(&str) -> Option<String>,
) -> Value {
    let pick = |names: &[String], value: &dyn Fn(&str) -> Option<String>| -> Map<String, Value> {
        names
            .iter()
            .filter_map(|name| value(name).map(|v| (name.clone(), Value::from(v))))
            .collect()
    };
    json!({
        "address": address.map(|addr| addr.ip().to_string()),
        "transport": transport,
        "eio": query_param("EIO").and_then(|v| v.parse::<u8>().ok()),
        "secure": false,
        "query": pick(&settings.forward_query, &query_param),
        "headers": pick(&settings.forward_headers, &header),
    })
}

/// Queues a notification (`kind`, with `data` plus the socket's namespace, id, user and seq)
/// for `endpoint`; false when the queue is full (a gap is recorded).
pub(crate) fn notify(
    hooks: &Hooks,
    endpoint: &Arc<Endpoint>,
    socket: &Socket,
    kind: &'static str,
    data: Map<String, Value>,
) -> bool {
    let shard = socket.shard().index();
    let event = hooks.event(shard, kind, Some(socket.id()), data);
    push(hooks, endpoint, shard, socket.id(), event)
}

/// One endpoint's queue on one shard.
struct Delivery {
    endpoint: Arc<Endpoint>,
    counters: Arc<super::super::counters::Counters>,
    origin: envelope::Origin,
    shard: usize,
    batch_max: usize,
    batch_bytes: usize,
    batch_interval: Duration,
    retry_for: Duration,
    /// Events this shard may hold for the endpoint.
    capacity: usize,
    queued: Cell<usize>,
    lanes: Vec<RefCell<Lane>>,
}

#[derive(Default)]
struct Lane {
    events: VecDeque<Queued>,
    /// Whether its task runs (and holds the shutdown).
    running: bool,
    gap: Option<Gap>,
}

struct Queued {
    id: String,
    json: Vec<u8>,
}

struct Gap {
    dropped: u64,
    reason: &'static str,
    first_id: String,
    last_id: String,
}

impl Lane {
    fn record_gap(&mut self, reason: &'static str, first_id: &str, last_id: &str, dropped: u64) {
        match &mut self.gap {
            Some(gap) => {
                gap.dropped += dropped;
                gap.reason = reason;
                last_id.clone_into(&mut gap.last_id);
            }
            None => {
                self.gap = Some(Gap {
                    dropped,
                    reason,
                    first_id: first_id.to_owned(),
                    last_id: last_id.to_owned(),
                })
            }
        }
    }
}

/// This shard's delivery for `endpoint`, made on first use.
fn delivery(hooks: &Hooks, endpoint: &Arc<Endpoint>, shard: usize) -> Rc<Delivery> {
    DELIVERIES.with(|deliveries| {
        deliveries
            .borrow_mut()
            .entry(endpoint.id)
            .or_insert_with(|| {
                let config = match &hooks.lifecycle {
                    Some(lifecycle) if Arc::ptr_eq(&lifecycle.endpoint, endpoint) => {
                        &lifecycle.config
                    }
                    _ => &hooks.batching,
                };
                Rc::new(Delivery {
                    endpoint: endpoint.clone(),
                    counters: hooks.counters.clone(),
                    origin: hooks.origin.clone(),
                    shard,
                    batch_max: config.batch_max,
                    batch_bytes: config.batch_bytes,
                    batch_interval: config.batch_interval,
                    retry_for: config.retry_for,
                    capacity: (config.queue_max / hooks.shards).max(1),
                    queued: Cell::new(0),
                    lanes: (0..config.lanes.max(1))
                        .map(|_| RefCell::default())
                        .collect(),
                })
            })
            .clone()
    })
}

/// Queues `event` in the lane of `key` (a socket id); false when the queue is full.
fn push(
    hooks: &Hooks,
    endpoint: &Arc<Endpoint>,
    shard: usize,
    key: &str,
    event: CloudEvent,
) -> bool {
    let delivery = delivery(hooks, endpoint, shard);
    let lane_index = lane_of(key, delivery.lanes.len());
    let mut lane = delivery.lanes[lane_index].borrow_mut();
    if delivery.queued.get() >= delivery.capacity {
        lane.record_gap("queue_full", &event.id, &event.id, 1);
        delivery
            .counters
            .lifecycle_events(&endpoint.name, "dropped", 1);
        return false;
    }
    let json = event.to_json(&delivery.origin);
    lane.events.push_back(Queued { id: event.id, json });
    delivery.queued.set(delivery.queued.get() + 1);
    delivery.counters.queued(true, 1);
    if !lane.running {
        lane.running = true;
        drop(lane);
        shard_spawn(run_lane(delivery.clone(), lane_index));
    }
    true
}

fn lane_of(key: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

/// Sends a lane's batches, one at a time, until it is empty.
async fn run_lane(delivery: Rc<Delivery>, index: usize) {
    let _hold = shard_hold();
    loop {
        let full = {
            let lane = delivery.lanes[index].borrow();
            lane.events.len() >= delivery.batch_max
                || lane.events.iter().map(|e| e.json.len()).sum::<usize>() >= delivery.batch_bytes
        };
        if !full {
            shard_sleep(delivery.batch_interval).await;
        }
        let batch = {
            let mut lane = delivery.lanes[index].borrow_mut();
            if lane.events.is_empty() && lane.gap.is_none() {
                lane.running = false;
                return;
            }
            take_batch(&delivery, &mut lane)
        };
        send_batch(&delivery, index, batch).await;
    }
}

/// One request's worth of a lane: the body (a JSON array), the ids of the queued events in
/// it, and the gap it reports first, if any.
struct Batch {
    body: Vec<u8>,
    ids: Vec<String>,
    gap: Option<Gap>,
}

/// The lane's next batch: a pending gap event first, then queued events up to the bounds.
fn take_batch(delivery: &Delivery, lane: &mut Lane) -> Batch {
    let mut body = Vec::with_capacity(4096);
    body.push(b'[');
    let gap = lane.gap.take();
    if let Some(gap) = &gap {
        let mut data = Map::new();
        data.insert("dropped".into(), gap.dropped.into());
        data.insert("reason".into(), gap.reason.into());
        data.insert("first_id".into(), gap.first_id.clone().into());
        data.insert("last_id".into(), gap.last_id.clone().into());
        let event = CloudEvent {
            kind: "io.ringcast.gap",
            // Not one of the shard's numbered events: it reports them.
            id: format!(
                "{}-{}-gap-{}",
                delivery.origin.boot_id, delivery.shard, gap.last_id
            ),
            subject: None,
            data,
        };
        body.extend_from_slice(&event.to_json(&delivery.origin));
    }
    let mut ids = Vec::new();
    while let Some(next) = lane.events.front() {
        let taken = ids.len();
        if taken >= delivery.batch_max
            || (taken > 0 && body.len() + next.json.len() > delivery.batch_bytes)
        {
            break;
        }
        let Some(next) = lane.events.pop_front() else {
            break;
        };
        if body.len() > 1 {
            body.push(b',');
        }
        body.extend_from_slice(&next.json);
        ids.push(next.id);
    }
    body.push(b']');
    Batch { body, ids, gap }
}

/// Sends one batch until a 2xx takes it or `retry_for` passes; then it is dropped and a gap
/// recorded (adding what the gap it carried reported).
async fn send_batch(delivery: &Delivery, index: usize, batch: Batch) {
    let delivery_id = envelope::delivery_id();
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let events = batch.ids.len() as u64;
    let name = &delivery.endpoint.name;
    loop {
        let deadline = Instant::now() + delivery.endpoint.timeout;
        let answer = delivery
            .endpoint
            .post("batch", &batch.body, true, &delivery_id, deadline)
            .await;
        let delivered = matches!(&answer, Ok(answer) if (200..300).contains(&answer.status));
        if let Ok(answer) = &answer {
            delivery.endpoint.record(delivered || answer.status < 500);
        }
        if delivered {
            delivery.counters.hook_call(name, "batch", "ok");
            delivery
                .counters
                .lifecycle_events(name, "delivered", events);
            break;
        }
        let outcome = match answer {
            Err(failure) => failure.outcome(),
            Ok(_) => "error",
        };
        delivery.counters.hook_call(name, "batch", outcome);
        if started.elapsed() + backoff > delivery.retry_for {
            delivery.counters.lifecycle_events(name, "dropped", events);
            let mut lane = delivery.lanes[index].borrow_mut();
            if let Some(old) = batch.gap {
                lane.record_gap(old.reason, &old.first_id, &old.last_id, old.dropped);
            }
            if let (Some(first), Some(last)) = (batch.ids.first(), batch.ids.last()) {
                lane.record_gap("retry_exhausted", first, last, events);
            }
            tracing::warn!(endpoint = %name, events, "lifecycle events dropped after retrying");
            break;
        }
        shard_sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    delivery
        .queued
        .set(delivery.queued.get().saturating_sub(batch.ids.len()));
    delivery.counters.queued(false, batch.ids.len() as u64);
}
