//! What each API route does: its body or query read into typed values (unknown fields
//! refused), its targets turned into one operator (`to` rooms, socket-id rooms and user rooms
//! `ringcast:user:<id>`, minus the excepts), then one Socket.IO operation, and the answer's
//! JSON. Every handler runs as a task of the shard that took the request.
//!
//! Built on the public operators only. Must not depend on the engine, the shard or the bus.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::Caller;
use super::config::Scope;
use super::error::{quoted, ApiError};
use super::{Answer, Call, HandlerFuture, ShardApi};
use crate::codec::adapter::looks_like_socket_id;
use crate::socketio::{Args, BroadcastOperator, SocketInfo};

/// The prefix of the rooms ringcast itself manages (users); the API never joins a client to
/// one, nor lists one.
pub(crate) const RESERVED_ROOM_PREFIX: &str = "ringcast:";
/// A user's room.
pub(crate) const USER_ROOM_PREFIX: &str = "ringcast:user:";
/// The longest room name, socket id or user id a target may name.
const MAX_NAME: usize = 256;
/// The longest ack wait an emit may ask for.
const MAX_ACK_TIMEOUT_MS: u64 = 60_000;
/// Sockets a query answers at most, and its default.
const MAX_QUERY_LIMIT: usize = 10_000;
const DEFAULT_QUERY_LIMIT: usize = 1000;
/// Rooms a page lists at most, and its default.
const MAX_ROOMS_LIMIT: usize = 1000;
const DEFAULT_ROOMS_LIMIT: usize = 100;
/// Operations a batch may hold.
const MAX_BATCH: usize = 1000;
/// Event names clients and Socket.IO reserve (the Node emitter refuses the same ones).
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// `to`: who an operation reaches. No include list means the whole namespace.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Targets {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    sockets: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    except_rooms: Vec<String>,
    #[serde(default)]
    except_sockets: Vec<String>,
    #[serde(default)]
    except_users: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitBody {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    to: Targets,
    event: String,
    #[serde(default)]
    args: Vec<Value>,
    /// Base64 of each binary attachment, in placeholder order.
    #[serde(default)]
    attachments: Vec<String>,
    #[serde(default)]
    volatile: bool,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    ack: Option<AckBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomsBody {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    to: Targets,
    rooms: Vec<String>,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    to: Targets,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    close: bool,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    to: Targets,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDisconnectBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    close: bool,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default, deserialize_with = "crate::control::units::duration_opt")]
    ttl: Option<Duration>,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    ops: Vec<Value>,
    #[serde(default)]
    stop_on_error: bool,
}

/// The typed body, or 400 naming what is wrong.
fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|error| ApiError::invalid(error.to_string()))
}

/// A query parameter, percent-decoded (`+` is a space); 400 if not UTF-8.
fn query_param(call: &Call, name: &str) -> Result<Option<String>, ApiError> {
    call.request
        .query_param(name)
        .map(|raw| percent_decode(raw).ok_or_else(|| ApiError::invalid(format!("bad `{name}`"))))
        .transpose()
}

/// A path parameter, percent-decoded.
fn path_param(call: &Call, name: &str) -> Result<String, ApiError> {
    let raw = call.request.param(name).unwrap_or_default();
    percent_decode(raw).ok_or_else(|| ApiError::invalid(format!("bad `{name}` in the path")))
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A name a target may use: not empty, not too long, no control characters.
fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_room(format!(
            "{kind} {} must be 1 to {MAX_NAME} bytes with no control characters",
            quoted(name)
        )));
    }
    Ok(())
}

/// A room an operation names: also never one of ringcast's own (users are named as users).
fn check_room(room: &str) -> Result<(), ApiError> {
    check_name("room", room)?;
    if room.starts_with(RESERVED_ROOM_PREFIX) {
        return Err(ApiError::invalid_room(format!(
            "room {} is reserved (target users with `users`)",
            quoted(room)
        )));
    }
    Ok(())
}

fn user_room(user: &str) -> Result<String, ApiError> {
    check_name("user", user)?;
    Ok(format!("{USER_ROOM_PREFIX}{user}"))
}

/// The namespace a body names (`/` by default), if served.
fn namespace(api: &ShardApi, nsp: Option<&str>) -> Result<String, ApiError> {
    let nsp = nsp.unwrap_or("/");
    if !api.shard.serves(nsp) {
        return Err(ApiError::namespace_not_served(nsp));
    }
    Ok(nsp.to_owned())
}

/// The rooms a target's includes and excepts become.
struct Selection {
    nsp: String,
    to: Vec<String>,
    except: Vec<String>,
}

impl Selection {
    fn new(api: &ShardApi, nsp: Option<&str>, targets: &Targets) -> Result<Selection, ApiError> {
        Selection::of(namespace(api, nsp)?, targets)
    }

    fn of(nsp: String, targets: &Targets) -> Result<Selection, ApiError> {
        let mut to = Vec::new();
        let mut except = Vec::new();
        for room in &targets.rooms {
            check_room(room)?;
            to.push(room.clone());
        }
        for socket in &targets.sockets {
            check_name("socket", socket)?;
            to.push(socket.clone());
        }
        for user in &targets.users {
            to.push(user_room(user)?);
        }
        for room in &targets.except_rooms {
            check_room(room)?;
            except.push(room.clone());
        }
        for socket in &targets.except_sockets {
            check_name("socket", socket)?;
            except.push(socket.clone());
        }
        for user in &targets.except_users {
            except.push(user_room(user)?);
        }
        Ok(Selection { nsp, to, except })
    }

    /// A fresh operator for this selection (an operator is used once).
    fn operator(&self, api: &ShardApi, local: bool) -> Result<BroadcastOperator, ApiError> {
        let operator = api
            .shard
            .of(&self.nsp)
            .ok_or_else(|| ApiError::namespace_not_served(&self.nsp))?;
        let operator = self.narrow(operator);
        Ok(if local { operator.local() } else { operator })
    }

    /// `operator` narrowed to this selection's rooms and excepts.
    fn narrow(&self, mut operator: BroadcastOperator) -> BroadcastOperator {
        for room in &self.to {
            operator = operator.to(room);
        }
        for room in &self.except {
            operator = operator.except(room);
        }
        operator
    }
}

/// `operator` (on a namespace) narrowed to `targets`, with the checks an API call gets (a
/// backend's `emit` action).
pub(crate) fn narrow(
    operator: BroadcastOperator,
    targets: &Targets,
) -> Result<BroadcastOperator, ApiError> {
    let selection = Selection::of(operator.nsp().to_owned(), targets)?;
    Ok(selection.narrow(operator))
}

/// Whether the operation leaves this process: false when asked `local`, or without a
/// cluster. With a cluster whose link is down, nothing is done and the caller gets 503, so a
/// retry (same `Idempotency-Key`) is safe. This reads the link's state as the request starts:
/// a fire-and-forget publish (emit, join, leave, disconnect) that the link queues and then
/// loses to an outage beginning meanwhile is not seen here (the link counts it as dropped or
/// failed in the stats and metrics), so such a request still answers `published: true`.
fn publishes(api: &ShardApi, local: bool) -> Result<bool, ApiError> {
    match (local, api.shard.cluster_connected()) {
        (true, _) | (_, None) => Ok(false),
        (false, Some(true)) => Ok(true),
        (false, Some(false)) => Err(ApiError::cluster_unavailable()),
    }
}

/// An event's arguments: each JSON value, placeholders (`{"_placeholder": true, "num": i}`)
/// standing for `attachments[i]` (base64), which clients receive as binary.
pub(crate) fn event_args(args: &[Value], attachments: &[String]) -> Result<Args, ApiError> {
    let attachments = attachments
        .iter()
        .enumerate()
        .map(|(i, text)| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .map_err(|_| ApiError::invalid(format!("attachments[{i}] is not base64")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut json = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        serde_json::to_writer(&mut json, arg)
            .map_err(|error| ApiError::invalid(error.to_string()))?;
    }
    let mut array = Vec::with_capacity(json.len() + 2);
    array.push(b'[');
    array.extend_from_slice(&json);
    array.push(b']');
    // The same check a client's packet gets: every placeholder names an attachment.
    crate::codec::json::check_placeholders(&array, attachments.len()).map_err(|_| {
        ApiError::invalid("a placeholder's `num` names no attachment (or args is not valid)")
    })?;
    Ok(Args::from_parts(json, args.len(), attachments))
}

pub(crate) fn check_event(event: &str) -> Result<(), ApiError> {
    if event.is_empty() {
        return Err(ApiError::invalid("`event` must not be empty"));
    }
    if RESERVED_EVENTS.contains(&event) || event.starts_with(RESERVED_ROOM_PREFIX) {
        return Err(ApiError::reserved_event(event));
    }
    Ok(())
}

// --- the routes ---

pub(crate) fn emit(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move { emit_op(&api, call.body).await.map(Answer::ok) })
}

async fn emit_op(api: &ShardApi, body: Value) -> Result<Value, ApiError> {
    let body: EmitBody = parse(body)?;
    check_event(&body.event)?;
    let args = event_args(&body.args, &body.attachments)?;
    // The bound every event's arguments have (spec 2.7 rule 3): what a client may send.
    let size = args.json_bytes().len() + args.attachments().iter().map(Bytes::len).sum::<usize>();
    let limit = api.shard.max_payload();
    if size > limit {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!("the event's arguments are over max_payload ({limit} bytes)"),
        ));
    }
    let selection = Selection::new(api, body.namespace.as_deref(), &body.to)?;
    let published = publishes(api, body.local)?;
    if let Some(ack) = body.ack {
        if ack.timeout_ms == 0 || ack.timeout_ms > MAX_ACK_TIMEOUT_MS {
            return Err(ApiError::invalid(format!(
                "ack.timeout_ms must be 1 to {MAX_ACK_TIMEOUT_MS}"
            )));
        }
        let mut operator = selection
            .operator(api, body.local)?
            .timeout(Duration::from_millis(ack.timeout_ms));
        if body.volatile {
            operator = operator.volatile();
        }
        let (sender, receiver) = oneshot::channel();
        operator.emit_with_ack_counted(&body.event, &args, move |expected, acks| {
            let _ = sender.send((expected, acks));
        });
        let (expected, acks) = receiver
            .await
            .map_err(|_| ApiError::new(503, "draining", "the server is stopping"))?;
        let (messages, timed_out) = match acks {
            Ok(messages) => (messages, false),
            Err((_, messages)) => (messages, true),
        };
        let acks: Vec<Value> = messages
            .iter()
            .map(|message| message.get::<Value>(0).unwrap_or(Value::Null))
            .collect();
        return Ok(json!({
            "expected": expected,
            "received": acks.len(),
            "acks": acks,
            "timed_out": timed_out,
        }));
    }
    // Counted first, on every shard of this process, then sent: each shard counts and
    // delivers in that order with nothing between (one ring per pair of shards).
    let counted = selection.operator(api, true)?.count_local();
    let mut operator = selection.operator(api, body.local)?;
    if body.volatile {
        operator = operator.volatile();
    }
    let here = operator.emit(&body.event, &args);
    let local_recipients = counted.await.unwrap_or(here);
    Ok(json!({ "local_recipients": local_recipients, "published": published }))
}

pub(crate) fn join(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move { rooms_op(&api, call.body, true).await.map(Answer::ok) })
}

pub(crate) fn leave(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move { rooms_op(&api, call.body, false).await.map(Answer::ok) })
}

async fn rooms_op(api: &ShardApi, body: Value, join: bool) -> Result<Value, ApiError> {
    let body: RoomsBody = parse(body)?;
    if body.rooms.is_empty() {
        return Err(ApiError::invalid("`rooms` must name at least one room"));
    }
    for room in &body.rooms {
        check_room(room)?;
    }
    let selection = Selection::new(api, body.namespace.as_deref(), &body.to)?;
    let published = publishes(api, body.local)?;
    let operator = selection.operator(api, body.local)?;
    let affected = if join {
        operator.sockets_join(&body.rooms).await
    } else {
        operator.sockets_leave(&body.rooms).await
    }
    .map_err(ApiError::from_op)?;
    Ok(json!({ "local_affected": affected, "published": published }))
}

pub(crate) fn disconnect(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move { disconnect_op(&api, call.body).await.map(Answer::ok) })
}

async fn disconnect_op(api: &ShardApi, body: Value) -> Result<Value, ApiError> {
    let body: DisconnectBody = parse(body)?;
    let selection = Selection::new(api, body.namespace.as_deref(), &body.to)?;
    let published = publishes(api, body.local)?;
    let affected =
        disconnect_selection(api, &selection, body.reason, body.close, body.local).await?;
    Ok(json!({ "local_affected": affected, "published": published }))
}

/// Tells the selected sockets why (`ringcast:disconnect`, code `api_disconnect`, spec 2.8),
/// then disconnects them; the event goes first on the same path, so it arrives first.
async fn disconnect_selection(
    api: &ShardApi,
    selection: &Selection,
    reason: Option<String>,
    close: bool,
    local: bool,
) -> Result<usize, ApiError> {
    let reason = reason.unwrap_or_else(|| "api disconnect".to_owned());
    let notice = Args::json(&json!({ "reason": reason, "code": "api_disconnect" }))
        .map_err(|_| ApiError::internal("cannot encode the notice"))?;
    selection
        .operator(api, local)?
        .emit("ringcast:disconnect", &notice);
    selection
        .operator(api, local)?
        .disconnect_sockets(close)
        .await
        .map_err(ApiError::from_op)
}

pub(crate) fn sockets_query(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move { query_op(&api, call.body).await.map(Answer::ok) })
}

async fn query_op(api: &ShardApi, body: Value) -> Result<Value, ApiError> {
    let body: QueryBody = parse(body)?;
    let limit = body
        .limit
        .unwrap_or(DEFAULT_QUERY_LIMIT)
        .min(MAX_QUERY_LIMIT);
    let selection = Selection::new(api, body.namespace.as_deref(), &body.to)?;
    publishes(api, body.local)?;
    let nodes = nodes_expected(api, &selection.nsp, body.local);
    let (mut sockets, partial) = selection
        .operator(api, body.local)?
        .fetch_sockets_partial()
        .await
        .map_err(ApiError::from_op)?;
    let nodes_expected = nodes.await;
    sockets.sort_by(|a, b| a.id.cmp(&b.id));
    sockets.truncate(limit);
    let sockets: Vec<Value> = sockets.iter().map(|s| socket_object(api, s)).collect();
    Ok(json!({
        "sockets": sockets,
        "partial": partial,
        "nodes_expected": nodes_expected,
        // A partial answer lacks at least one node's part; which, the fetch does not say.
        "nodes_answered": if partial { nodes_expected.saturating_sub(1) } else { nodes_expected },
    }))
}

/// How many nodes serve `nsp` (1 without a cluster or with `local`).
fn nodes_expected(
    api: &ShardApi,
    nsp: &str,
    local: bool,
) -> impl std::future::Future<Output = usize> {
    let count = match (local, api.shard.cluster_connected(), api.shard.of(nsp)) {
        (false, Some(_), Some(operator)) => Some(operator.server_count()),
        _ => None,
    };
    async move {
        match count {
            Some(count) => count.await.unwrap_or(1),
            None => 1,
        }
    }
}

pub(crate) fn socket(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let id = path_param(&call, "id")?;
        check_name("socket", &id)?;
        let nsp = query_param(&call, "namespace")?;
        let nsp = namespace(&api, nsp.as_deref())?;
        let operator = api
            .shard
            .of(&nsp)
            .ok_or_else(|| ApiError::namespace_not_served(&nsp))?
            .to(&id);
        publishes(&api, false)?;
        let (sockets, _) = operator
            .fetch_sockets_partial()
            .await
            .map_err(ApiError::from_op)?;
        let found = sockets.iter().find(|socket| socket.id == id);
        match found {
            Some(socket) => Ok(Answer::ok(socket_object(&api, socket))),
            None => Err(ApiError::not_found(format!(
                "no socket {} in namespace {}",
                quoted(&id),
                quoted(&nsp)
            ))),
        }
    })
}

pub(crate) fn rooms(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let nsp = query_param(&call, "namespace")?;
        let nsp = namespace(&api, nsp.as_deref())?;
        let prefix = query_param(&call, "prefix")?.unwrap_or_default();
        let limit = match query_param(&call, "limit")? {
            Some(limit) => limit
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_ROOMS_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::invalid(format!("`limit` must be 1 to {MAX_ROOMS_LIMIT}"))
                })?,
            None => DEFAULT_ROOMS_LIMIT,
        };
        let after = match query_param(&call, "cursor")? {
            Some(cursor) if !cursor.is_empty() => Some(decode_cursor(&cursor)?),
            _ => None,
        };
        let local = match query_param(&call, "scope")?.as_deref() {
            None | Some("cluster") => api.shard.cluster_connected().is_none(),
            Some("local") => true,
            Some(_) => return Err(ApiError::invalid("`scope` must be local or cluster")),
        };
        publishes(&api, local)?;
        let operator = api
            .shard
            .of(&nsp)
            .ok_or_else(|| ApiError::namespace_not_served(&nsp))?;
        let operator = if local { operator.local() } else { operator };
        let (names, partial) = match operator.all_rooms().await {
            Ok(names) => (names, false),
            // Another node did not answer in time: this node's rooms, said to be partial.
            Err(crate::socketio::OpError::Timeout) => {
                let local_rooms = api.shard.of(&nsp).map(|op| op.local().all_rooms());
                match local_rooms {
                    Some(rooms) => (rooms.await.map_err(ApiError::from_op)?, true),
                    None => (Vec::new(), true),
                }
            }
            Err(error) => return Err(ApiError::from_op(error)),
        };
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|room| listed(room) && room.starts_with(&prefix))
            .filter(|room| after.as_ref().is_none_or(|after| room > after))
            .collect();
        names.sort_unstable();
        names.dedup();
        let more = names.len() > limit;
        names.truncate(limit);
        let mut counts = Vec::with_capacity(names.len());
        for room in &names {
            let operator = api
                .shard
                .of(&nsp)
                .ok_or_else(|| ApiError::namespace_not_served(&nsp))?;
            counts.push(operator.to(room).count_local());
        }
        let mut rooms = Vec::with_capacity(names.len());
        for (name, count) in names.iter().zip(counts) {
            let count = count.await.map_err(ApiError::from_op)?;
            rooms.push(json!({ "name": name, "local_sockets": count }));
        }
        let next_cursor = match (more, names.last()) {
            (true, Some(last)) => Value::String(encode_cursor(last)),
            _ => Value::Null,
        };
        Ok(Answer::ok(json!({
            "rooms": rooms,
            "next_cursor": next_cursor,
            "partial": partial,
        })))
    })
}

/// Whether a room is listed: ringcast's own rooms and socket-id rooms (remote ones known by
/// the Socket.IO id shape) are not.
fn listed(room: &str) -> bool {
    !room.starts_with(RESERVED_ROOM_PREFIX) && !looks_like_socket_id(room)
}

/// A page's cursor: the last room listed, opaque to clients.
fn encode_cursor(room: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::invalid("bad `cursor`"))
}

pub(crate) fn rooms_count(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let nsp = query_param(&call, "namespace")?;
        let nsp = namespace(&api, nsp.as_deref())?;
        let room =
            query_param(&call, "room")?.ok_or_else(|| ApiError::invalid("`room` is required"))?;
        check_name("room", &room)?;
        let local = match query_param(&call, "local")?.as_deref() {
            None | Some("false") => false,
            Some("true") | Some("") => true,
            Some(_) => return Err(ApiError::invalid("`local` must be true or false")),
        };
        publishes(&api, local)?;
        let operator = api
            .shard
            .of(&nsp)
            .ok_or_else(|| ApiError::namespace_not_served(&nsp))?
            .to(&room);
        // This process counts without describing anyone; the cluster's count needs each
        // node's members (REMOTE_FETCH), which costs O(members).
        let (sockets, partial) = if local || api.shard.cluster_connected().is_none() {
            (
                operator.count_local().await.map_err(ApiError::from_op)?,
                false,
            )
        } else {
            let (sockets, partial) = operator
                .fetch_sockets_partial()
                .await
                .map_err(ApiError::from_op)?;
            (sockets.len(), partial)
        };
        Ok(Answer::ok(
            json!({ "room": room, "sockets": sockets, "partial": partial }),
        ))
    })
}

pub(crate) fn user_sockets(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = path_param(&call, "user")?;
        let room = user_room(&user)?;
        publishes(&api, false)?;
        let mut all = Vec::new();
        let mut partial = false;
        for nsp in api.shard.namespaces() {
            let Some(operator) = api.shard.of(&nsp) else {
                continue;
            };
            let (sockets, late) = operator
                .to(&room)
                .fetch_sockets_partial()
                .await
                .map_err(ApiError::from_op)?;
            partial |= late;
            all.extend(sockets.iter().map(|socket| socket_object(&api, socket)));
        }
        Ok(Answer::ok(json!({ "sockets": all, "partial": partial })))
    })
}

pub(crate) fn user_disconnect(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = path_param(&call, "user")?;
        check_name("user", &user)?;
        let body: UserDisconnectBody = parse(call.body)?;
        let published = publishes(&api, body.local)?;
        let targets = Targets {
            users: vec![user],
            ..Targets::default()
        };
        let mut affected = 0;
        for nsp in api.shard.namespaces() {
            let selection = Selection::new(&api, Some(&nsp), &targets)?;
            affected += disconnect_selection(
                &api,
                &selection,
                body.reason.clone(),
                body.close,
                body.local,
            )
            .await?;
        }
        Ok(Answer::ok(
            json!({ "local_affected": affected, "published": published }),
        ))
    })
}

/// `POST /v1/users/{user}/revoke`: the user's tokens issued before `before` are refused at
/// connect and refresh until the entry expires, here and (through a server-side emit the
/// other ringcast nodes record) on every node; every socket of the user is told `revoked`
/// and disconnected, wherever it is.
pub(crate) fn revoke(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = path_param(&call, "user")?;
        check_name("user", &user)?;
        let body: RevokeBody = parse(call.body)?;
        let published = publishes(&api, body.local)?;
        let users = &api.api.users;
        let before = body.before.unwrap_or_else(crate::control::users::unix_now);
        let ttl = body.ttl.unwrap_or(users.revocation_ttl);
        users.revocations.revoke(&user, before, ttl);
        if !body.local {
            users.store.save(&users.revocations, &user, before);
        }
        let namespaces = api.shard.namespaces();
        if published {
            let notice = json!({
                "user": user, "revoked_before": before, "ttl_ms": ttl.as_millis() as u64,
            });
            tell_nodes(&api, crate::control::users::REVOKE_EVENT, &notice)?;
        }
        let targets = Targets {
            users: vec![user],
            ..Targets::default()
        };
        let notice = Args::json(&json!({ "reason": "revoked", "code": "revoked" }))
            .map_err(|_| ApiError::internal("cannot encode the notice"))?;
        for nsp in namespaces {
            let selection = Selection::new(&api, Some(&nsp), &targets)?;
            selection
                .operator(&api, body.local)?
                .emit("ringcast:disconnect", &notice);
            selection
                .operator(&api, body.local)?
                .disconnect_sockets(false)
                .await
                .map_err(ApiError::from_op)?;
        }
        Ok(Answer::ok(json!({ "revoked_before": before })))
    })
}

/// Sends `event` with `notice` to the other ringcast nodes' handlers (a server-side emit);
/// one namespace carries it to each node, `/` when served (a Node peer ignores the event).
fn tell_nodes(api: &ShardApi, event: &str, notice: &Value) -> Result<(), ApiError> {
    let notice = Args::json(notice).map_err(|_| ApiError::internal("cannot encode the notice"))?;
    let namespaces = api.shard.namespaces();
    let carrier = namespaces
        .iter()
        .find(|nsp| nsp.as_str() == "/")
        .or_else(|| namespaces.first());
    if let Some(operator) = carrier.and_then(|nsp| api.shard.of(nsp)) {
        operator.server_side_emit(event, &notice);
    }
    Ok(())
}

/// `DELETE /v1/users/{user}/revoke`: lifts the revocation here and on the other ringcast nodes.
pub(crate) fn lift_revocation(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let user = path_param(&call, "user")?;
        check_name("user", &user)?;
        let published = publishes(&api, false)?;
        let lifted = api.api.users.revocations.lift(&user);
        api.api.users.store.remove(&user);
        if published {
            tell_nodes(
                &api,
                crate::control::users::LIFT_EVENT,
                &json!({ "user": user }),
            )?;
        }
        Ok(Answer::ok(json!({ "lifted": lifted })))
    })
}

pub(crate) fn batch(api: Rc<ShardApi>, call: Call) -> HandlerFuture {
    Box::pin(async move {
        let Call { caller, body, .. } = call;
        let body: BatchBody = parse(body)?;
        if body.ops.len() > MAX_BATCH {
            return Err(ApiError::invalid(format!(
                "a batch holds at most {MAX_BATCH} ops"
            )));
        }
        let mut results = Vec::with_capacity(body.ops.len());
        for op in body.ops {
            let outcome = batch_op(&api, &caller, op).await;
            let failed = outcome.is_err();
            results.push(match outcome {
                Ok(value) => json!({ "ok": value }),
                Err(error) => error.body(),
            });
            if failed && body.stop_on_error {
                break;
            }
        }
        Ok(Answer::ok(json!({ "results": results })))
    })
}

/// One op of a batch: `{"op": "emit" | "join" | "leave" | "disconnect" | "query", ...}` with
/// the body of the route it stands for, its scope checked like the route's.
async fn batch_op(api: &ShardApi, caller: &Caller, op: Value) -> Result<Value, ApiError> {
    let Value::Object(mut fields) = op else {
        return Err(ApiError::invalid("an op must be an object"));
    };
    let name = match fields.remove("op") {
        Some(Value::String(name)) => name,
        _ => return Err(ApiError::invalid("an op needs `op` (a string)")),
    };
    let scope = match name.as_str() {
        "emit" => Scope::Emit,
        "join" | "leave" => Scope::Rooms,
        "disconnect" => Scope::Disconnect,
        "query" => Scope::Read,
        _ => return Err(ApiError::invalid(format!("unknown op {}", quoted(&name)))),
    };
    if !caller.scopes.allows(scope) {
        return Err(ApiError::forbidden(scope));
    }
    let body = Value::Object(fields);
    match name.as_str() {
        "emit" => emit_op(api, body).await,
        "join" => rooms_op(api, body, true).await,
        "leave" => rooms_op(api, body, false).await,
        "disconnect" => disconnect_op(api, body).await,
        _ => query_op(api, body).await,
    }
}

pub(crate) fn info(api: Rc<ShardApi>, _call: Call) -> HandlerFuture {
    Box::pin(async move {
        let counts = api.shard.socket_counts().await;
        let mut namespaces: BTreeMap<String, usize> =
            api.shard.namespaces().into_iter().map(|n| (n, 0)).collect();
        for (name, count) in counts {
            *namespaces.entry(name).or_default() += count;
        }
        let namespaces: Vec<Value> = namespaces
            .into_iter()
            .map(|(name, local_sockets)| json!({ "name": name, "local_sockets": local_sockets }))
            .collect();
        let cluster = api.shard.cluster_connected();
        let nodes = match (cluster, api.shard.of("/")) {
            (Some(true), Some(operator)) => operator
                .server_count()
                .await
                .ok()
                .map_or(Value::Null, Value::from),
            (None, _) => Value::from(1),
            _ => Value::Null,
        };
        let node = &api.api.node;
        Ok(Answer::ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "node": node.name,
            "boot_id": node.boot_id,
            "started_at": node.started_at,
            "cores": api.shard.shards(),
            "namespaces": namespaces,
            "cluster": { "enabled": cluster.is_some(), "connected": cluster, "nodes": nodes },
        })))
    })
}

pub(crate) fn health(api: Rc<ShardApi>, _call: Call) -> HandlerFuture {
    Box::pin(async move {
        Ok(if api.shard.draining() {
            Answer {
                status: 503,
                body: json!({ "status": "draining" }),
            }
        } else {
            Answer::ok(json!({ "status": "ok" }))
        })
    })
}

pub(crate) fn openapi(_api: Rc<ShardApi>, _call: Call) -> HandlerFuture {
    Box::pin(async move { Ok(Answer::ok(super::routes::openapi())) })
}

/// Socket.IO's own query parameters and anything that may carry a credential: never shown.
const HIDDEN_QUERY: [&str; 10] = [
    "EIO",
    "transport",
    "sid",
    "t",
    "b64",
    "j",
    "token",
    "access_token",
    "api_key",
    "key",
];

/// A socket as the API shows it (spec 2.5): never its auth payload or a token.
fn socket_object(api: &ShardApi, socket: &SocketInfo) -> Value {
    let user = socket
        .rooms
        .iter()
        .find_map(|room| room.strip_prefix(USER_ROOM_PREFIX))
        .map_or(Value::Null, |user| Value::String(user.to_owned()));
    let mut query = Map::new();
    for pair in socket.handshake.query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (percent_decode(name), percent_decode(value)) else {
            continue;
        };
        if HIDDEN_QUERY
            .iter()
            .any(|hidden| name.eq_ignore_ascii_case(hidden))
        {
            continue;
        }
        query.entry(name).or_insert(Value::String(value));
    }
    let node = match socket.shard {
        Some(_) => Value::String(api.api.node.name.clone()),
        None => Value::Null,
    };
    json!({
        "id": socket.id,
        "namespace": socket.nsp,
        "user": user,
        "rooms": socket.rooms,
        "data": socket.data,
        "handshake": {
            "address": socket.handshake.address.map(|a| a.ip().to_string()),
            // Not recorded by the engine yet.
            "time": Value::Null,
            "issued": Value::Null,
            "query": query,
            "headers": {},
        },
        "node": node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_with_placeholders_need_their_attachments() {
        let args = event_args(
            &[json!("a"), json!({ "_placeholder": true, "num": 0 })],
            &["AAEC".to_owned()],
        )
        .expect("valid");
        assert_eq!(args.len(), 2);
        assert_eq!(args.attachments(), &[Bytes::from_static(&[0, 1, 2])]);
        assert!(event_args(
            &[json!({ "_placeholder": true, "num": 1 })],
            &["AAEC".to_owned()]
        )
        .is_err());
        assert!(event_args(&[], &["not base64!".to_owned()]).is_err());
    }

    #[test]
    fn reserved_events_and_rooms() {
        for event in ["connect", "disconnect", "newListener", "ringcast:x"] {
            assert_eq!(
                check_event(event).map_err(|e| e.code),
                Err("reserved_event")
            );
        }
        assert!(check_event("chat").is_ok());
        assert_eq!(
            check_room("ringcast:user:1").map_err(|e| e.code),
            Err("invalid_room")
        );
        assert_eq!(check_room("").map_err(|e| e.code), Err("invalid_room"));
        assert_eq!(check_room("a\nb").map_err(|e| e.code), Err("invalid_room"));
        assert!(check_room("game:1").is_ok());
        assert!(!listed("ringcast:user:1"));
        assert!(!listed("abcdefghij0123456789"));
        assert!(listed("game:1"));
    }

    #[test]
    fn percent_decoding_and_cursors() {
        assert_eq!(percent_decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%"), None);
        let cursor = encode_cursor("room:42/é");
        assert_eq!(decode_cursor(&cursor).ok().as_deref(), Some("room:42/é"));
        assert!(decode_cursor("!!").is_err());
    }
}
