//! Client events forwarded to a backend (spec §2.4): a namespace's `[[events]]` rules choose
//! them by name. A *call* (`io.ringcast.event`) waits in the socket's FIFO (at most
//! `max_pending`, `max_in_flight` at a time, so a socket's calls reach the backend in emit
//! order); its answer's actions are applied in order on this shard, then its `ack` becomes the
//! Socket.IO ack. A *notification* joins the socket's ordered event stream ([`super::lifecycle`]).
//!
//! Runs on the shard that owns the socket. Must not depend on the engine, the shard or the bus.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::config::{EventRule, Mode, OnError, MAX_ACTIONS};
use super::lifecycle::{self, JoinCause, SocketHooks};
use super::{Endpoint, Failure, Hooks};
use crate::control::api::handlers::{check_event, event_args, narrow, Targets};
use crate::control::app::{ack_error, server_disconnect};
use crate::control::policy::NamespacePolicy;
use crate::socketio::{AckSender, Args, Message, Socket};

/// One forwarding rule, ready.
#[derive(Debug)]
pub(crate) struct Rule {
    glob: String,
    pub(crate) endpoint: Arc<Endpoint>,
    mode: Mode,
    timeout: Duration,
    on_error: OnError,
    max_in_flight: usize,
    max_pending: usize,
    retries: u32,
    max_bytes: Option<usize>,
}

impl Rule {
    pub(crate) fn new(rule: &EventRule, hooks: &Hooks) -> Option<Rule> {
        let endpoint = hooks.endpoint(&rule.endpoint)?.clone();
        Some(Rule {
            glob: rule.name.clone(),
            timeout: rule.timeout.unwrap_or(endpoint.timeout),
            endpoint,
            mode: rule.mode,
            on_error: rule.on_error,
            max_in_flight: rule.max_in_flight,
            max_pending: rule.max_pending,
            retries: rule.retries,
            max_bytes: rule.max_bytes,
        })
    }

    pub(crate) fn matches(&self, event: &str) -> bool {
        super::config::glob_matches(&self.glob, event)
    }
}

/// A socket's forwarded calls: waiting in order, and how many are in flight.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: VecDeque<Call>,
    in_flight: usize,
}

struct Call {
    rule: Arc<Rule>,
    event: String,
    message: Message,
    ack: Option<AckSender>,
}

/// What forwarding needs of the socket's namespace.
pub(crate) struct Forwarding {
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) rules: Vec<Arc<Rule>>,
    pub(crate) policy: Arc<NamespacePolicy>,
}

/// Forwards `event` by `rule`: a call queues (or is refused `overloaded` when the socket's
/// FIFO is full), a notification joins the socket's event stream.
pub(crate) fn forward(
    forwarding: &Arc<Forwarding>,
    socket: &Socket,
    state: &Rc<SocketHooks>,
    rule: &Arc<Rule>,
    event: &str,
    message: Message,
    ack: Option<AckSender>,
) {
    if let Some(max) = rule.max_bytes {
        let size = message.to_args().json_bytes().len()
            + message.attachments().iter().map(|a| a.len()).sum::<usize>();
        if size > max {
            return ack_error(ack, "too_large", "event too large to forward");
        }
    }
    match rule.mode {
        Mode::Notify => {
            let data = event_data(socket, state, event, &message, ack.is_some());
            let queued = lifecycle::notify(
                &forwarding.hooks,
                &rule.endpoint,
                socket,
                "io.ringcast.event",
                data,
            );
            match (ack, queued) {
                (Some(ack), true) => {
                    if let Ok(args) = Args::json(&json!({ "ok": true })) {
                        let _ = ack.send(&args);
                    }
                }
                (ack, false) => ack_error(ack, "overloaded", "event queue full"),
                (None, true) => {}
            }
        }
        Mode::Call => {
            {
                let mut queue = state.queue.borrow_mut();
                if queue.waiting.len() >= rule.max_pending {
                    drop(queue);
                    forwarding
                        .hooks
                        .counters
                        .hook_call(&rule.endpoint.name, "event", "overloaded");
                    return ack_error(ack, "overloaded", "too many events waiting for the backend");
                }
                queue.waiting.push_back(Call {
                    rule: rule.clone(),
                    event: event.to_owned(),
                    message,
                    ack,
                });
            }
            pump(forwarding, socket, state);
        }
    }
}

/// Starts the socket's waiting calls while its rule lets more be in flight.
fn pump(forwarding: &Arc<Forwarding>, socket: &Socket, state: &Rc<SocketHooks>) {
    loop {
        let call = {
            let mut queue = state.queue.borrow_mut();
            let Some(next) = queue.waiting.front() else {
                return;
            };
            if queue.in_flight >= next.rule.max_in_flight {
                return;
            }
            queue.in_flight += 1;
            queue.waiting.pop_front()
        };
        let Some(call) = call else {
            return;
        };
        // The event leaves in emit order: its seq and body are made now.
        let data = event_data(
            socket,
            state,
            &call.event,
            &call.message,
            call.ack.is_some(),
        );
        let event = forwarding.hooks.event(
            socket.shard().index(),
            "io.ringcast.event",
            Some(socket.id()),
            data,
        );
        let body = event.to_json(&forwarding.hooks.origin);
        let (forwarding, task_socket, task_state) =
            (forwarding.clone(), socket.clone(), state.clone());
        socket.spawn(async move {
            let outcome = send(&call.rule, &body).await;
            finish(&forwarding, &task_socket, call, outcome);
            task_state.queue.borrow_mut().in_flight -= 1;
            if task_socket.connected() {
                pump(&forwarding, &task_socket, &task_state);
            } else {
                // Nobody will read these answers: the waiting calls are dropped unsent.
                task_state.queue.borrow_mut().waiting.clear();
            }
        });
    }
}

/// The `data` of an `io.ringcast.event`: the socket, its user and data, the event, its seq,
/// whether the client waits for an ack, and the arguments with binary ones as placeholders
/// plus base64 attachments.
fn event_data(
    socket: &Socket,
    state: &SocketHooks,
    event: &str,
    message: &Message,
    ack: bool,
) -> Map<String, Value> {
    let mut data = super::about(socket, state.user.as_deref());
    data.insert("event".into(), event.into());
    data.insert("seq".into(), state.next_seq().into());
    data.insert("ack".into(), ack.into());
    let mut raw = Vec::with_capacity(message.to_args().json_bytes().len() + 2);
    raw.push(b'[');
    raw.extend_from_slice(message.to_args().json_bytes());
    raw.push(b']');
    data.insert(
        "args".into(),
        serde_json::from_slice(&raw).unwrap_or_else(|_| json!([])),
    );
    if !message.attachments().is_empty() {
        let attachments: Vec<Value> = message
            .attachments()
            .iter()
            .map(|bytes| {
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into()
            })
            .collect();
        data.insert("attachments".into(), attachments.into());
    }
    data.insert("data".into(), socket.data_json());
    data
}

/// Sends one call's body by its rule, retrying (same id, same delivery) only a 503 with
/// `Retry-After`, within the rule's timeout.
async fn send(rule: &Rule, body: &[u8]) -> Result<crate::net::client::Answer, Failure> {
    let deadline = Instant::now() + rule.timeout;
    let delivery = super::envelope::delivery_id();
    let mut retries = rule.retries;
    loop {
        let answer = rule
            .endpoint
            .post("event", body, false, &delivery, deadline)
            .await?;
        let retry_after = (answer.status == 503)
            .then(|| {
                answer
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .flatten();
        match retry_after {
            Some(seconds) if retries > 0 => {
                let wait = Duration::from_secs(seconds);
                if Instant::now() + wait >= deadline {
                    return Ok(answer);
                }
                retries -= 1;
                crate::server::shard_sleep(wait).await;
            }
            _ => return Ok(answer),
        }
    }
}

/// A call's answer as the backend meant it.
#[derive(Debug, Default, Deserialize)]
struct CallAnswer {
    #[serde(default)]
    ack: Vec<Value>,
    #[serde(default)]
    attachments: Vec<String>,
    #[serde(default)]
    actions: Vec<Value>,
}

/// Applies a finished call: its actions, then its ack; or its error.
fn finish(
    forwarding: &Forwarding,
    socket: &Socket,
    call: Call,
    outcome: Result<crate::net::client::Answer, Failure>,
) {
    let endpoint = &call.rule.endpoint;
    let counters = &forwarding.hooks.counters;
    let failure = match outcome {
        Err(failure) => failure,
        Ok(answer) => match answer.status {
            204 => {
                endpoint.record(true);
                counters.hook_call(&endpoint.name, "event", "ok");
                if let Some(ack) = call.ack {
                    let _ = ack.send(&Args::new());
                }
                return;
            }
            200..=299 => match serde_json::from_slice::<CallAnswer>(&answer.body) {
                Ok(reply) if reply.actions.len() <= MAX_ACTIONS => {
                    endpoint.record(true);
                    counters.hook_call(&endpoint.name, "event", "ok");
                    apply_actions(forwarding, socket, &reply.actions);
                    let args = event_args(&reply.ack, &reply.attachments);
                    match (call.ack, args) {
                        (Some(ack), Ok(args)) => {
                            let _ = ack.send(&args);
                        }
                        (ack, Err(_)) => {
                            ack_error(ack, "backend_error", "the backend's ack is not valid")
                        }
                        (None, Ok(_)) => {}
                    }
                    return;
                }
                _ => {
                    endpoint.record(false);
                    Failure::Error
                }
            },
            400..=499 => {
                endpoint.record(true);
                let error = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|mut body| body.get_mut("error").map(Value::take))
                    .filter(Value::is_object);
                match error {
                    Some(error) => {
                        counters.hook_call(&endpoint.name, "event", "denied");
                        if let (Some(ack), Ok(args)) =
                            (call.ack, Args::json(&json!({ "error": error })))
                        {
                            let _ = ack.send(&args);
                        }
                        return;
                    }
                    None => Failure::Error,
                }
            }
            _ => {
                endpoint.record(false);
                Failure::Error
            }
        },
    };
    counters.hook_call(&endpoint.name, "event", failure.outcome());
    let message = match failure {
        Failure::Timeout => "the backend did not answer in time",
        Failure::Unavailable => "the backend is unavailable",
        Failure::Overloaded => "too many calls wait for the backend",
        Failure::Error => "the backend failed",
    };
    if call.rule.on_error == OnError::Disconnect && socket.connected() {
        server_disconnect(socket, "backend", "backend");
        return;
    }
    ack_error(call.ack, failure.code(), message);
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Action {
    Join {
        rooms: Vec<String>,
    },
    Leave {
        rooms: Vec<String>,
    },
    Emit {
        #[serde(default)]
        to: Targets,
        #[serde(default)]
        except_self: bool,
        event: String,
        #[serde(default)]
        args: Vec<Value>,
        #[serde(default)]
        attachments: Vec<String>,
    },
    Disconnect {
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Applies a call's actions in order; an invalid one is logged and skipped.
fn apply_actions(forwarding: &Forwarding, socket: &Socket, actions: &[Value]) {
    for (n, action) in actions.iter().enumerate() {
        let action = match Action::deserialize(action) {
            Ok(action) => action,
            Err(error) => {
                tracing::warn!(action = n, %error, "a backend action is not valid; skipped");
                continue;
            }
        };
        match action {
            Action::Join { rooms } => {
                for room in rooms {
                    if forwarding.policy.room_error(&room).is_none() {
                        lifecycle::joined_by(JoinCause::Action, || socket.join(&room));
                    }
                }
            }
            Action::Leave { rooms } => {
                for room in rooms {
                    if forwarding.policy.room_error(&room).is_none() {
                        lifecycle::joined_by(JoinCause::Action, || socket.leave(&room));
                    }
                }
            }
            Action::Emit {
                to,
                except_self,
                event,
                args,
                attachments,
            } => {
                let operator = check_event(&event)
                    .and_then(|()| narrow(socket.namespace(), &to))
                    .and_then(|operator| Ok((operator, event_args(&args, &attachments)?)));
                match operator {
                    Ok((operator, args)) => {
                        let operator = if except_self {
                            operator.except(socket.id())
                        } else {
                            operator
                        };
                        operator.emit(&event, &args);
                    }
                    Err(error) => {
                        tracing::warn!(action = n, error = %error.message, "a backend emit is not valid; skipped");
                    }
                }
            }
            Action::Disconnect { reason } => {
                let reason = reason.unwrap_or_else(|| "backend".to_owned());
                server_disconnect(socket, &reason, "backend");
                return;
            }
        }
    }
}

/// The first rule of `rules` that forwards `event`.
pub(crate) fn rule_for<'a>(rules: &'a [Arc<Rule>], event: &str) -> Option<&'a Arc<Rule>> {
    rules.iter().find(|rule| rule.matches(event))
}

/// The empty per-socket queue.
pub(crate) fn queue() -> RefCell<Queue> {
    RefCell::new(Queue::default())
}
