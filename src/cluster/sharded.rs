//! The sharded adapter's side of a node (Node's `createShardedAdapter`, spec A.7): what a message
//! on a sharded channel asks of this node, and the sharded forms of this node's requests and
//! answers. The meanings are the classic adapter's, so both modes share [`Incoming`] and the
//! classic request and response types; only channels and format differ. Sans-IO, like the rest
//! of `cluster`.

use std::collections::HashMap;

use super::{
    operation, parse_request_id, Answer, AnswerReply, Dropped, Incoming, RemoteAckBroadcast,
    RemoteAction, RemoteBroadcast, RemoteQuery, RemoteServerEvent, MAX_MESSAGE,
};
use crate::codec::adapter::{
    self, BroadcastOpts, ClusterBody, ClusterMessage, Packet, RequestBody, Response,
};
use crate::codec::notepack;

/// The sharded message of the same meaning as a classic request; `None` for what the sharded
/// adapter never asks (all rooms, the legacy forms).
pub(super) fn request_body(body: RequestBody) -> Option<ClusterBody> {
    // Node's sharded adapter always writes `flags`, `{}` when none is set.
    let with_flags = |opts: BroadcastOpts| BroadcastOpts {
        flags: Some(opts.flags.unwrap_or_default()),
        ..opts
    };
    Some(match body {
        RequestBody::RemoteJoin { opts, rooms } => ClusterBody::SocketsJoin {
            opts: with_flags(opts),
            rooms,
        },
        RequestBody::RemoteLeave { opts, rooms } => ClusterBody::SocketsLeave {
            opts: with_flags(opts),
            rooms,
        },
        RequestBody::RemoteDisconnect { opts, close } => ClusterBody::DisconnectSockets {
            opts: with_flags(opts),
            close,
        },
        RequestBody::RemoteFetch { request_id, opts } => ClusterBody::FetchSockets {
            opts: with_flags(opts),
            request_id,
        },
        RequestBody::ServerSideEmit { request_id, data } => ClusterBody::ServerSideEmit {
            request_id,
            packet: data,
        },
        RequestBody::Broadcast {
            request_id,
            packet,
            opts,
        } => ClusterBody::Broadcast {
            request_id: Some(request_id),
            // The message names the namespace; the packet does not.
            packet: Packet {
                nsp: None,
                ..packet
            },
            opts: with_flags(opts),
        },
        RequestBody::Sockets { .. }
        | RequestBody::AllRooms { .. }
        | RequestBody::LegacyJoin { .. }
        | RequestBody::LegacyLeave { .. }
        | RequestBody::LegacyDisconnect { .. } => return None,
    })
}

/// The sharded message of the same meaning as a classic response, or the response back when
/// the sharded adapter has none (it never asks the questions those answer).
pub(super) fn response_body(response: Response) -> Result<ClusterBody, Response> {
    Ok(match response {
        Response::RemoteFetch {
            request_id,
            sockets,
        } => ClusterBody::FetchSocketsResponse {
            request_id,
            sockets,
        },
        Response::ServerSideEmit { request_id, data } => ClusterBody::ServerSideEmitResponse {
            request_id,
            packet: data,
        },
        Response::BroadcastClientCount {
            request_id,
            client_count,
        } => ClusterBody::BroadcastClientCount {
            request_id,
            client_count,
        },
        Response::BroadcastAck { request_id, packet } => {
            ClusterBody::BroadcastAck { request_id, packet }
        }
        other @ (Response::Sockets { .. } | Response::AllRooms { .. } | Response::Done { .. }) => {
            return Err(other)
        }
    })
}

/// Reads a message a sharded subscription received on `channel`, for a node serving the
/// namespaces of `uids` (namespace → this node's uid there) under `prefix`. Every message of
/// this node's own uid is ignored, whatever its type (the sharded adapter applies its joins,
/// leaves and disconnects before publishing them); a message of another namespace than the
/// channel's is dropped.
pub(super) fn receive(
    prefix: &str,
    uids: &HashMap<String, String>,
    channel: &str,
    payload: &[u8],
) -> Incoming {
    // A namespace may contain `#`, so several served namespaces may claim the channel; the
    // message's own namespace settles it.
    let claimed: Vec<(&str, &str)> = uids
        .iter()
        .filter(|(nsp, uid)| adapter::sharded_channel(channel, prefix, nsp, uid).is_some())
        .map(|(nsp, uid)| (nsp.as_str(), uid.as_str()))
        .collect();
    if claimed.is_empty() {
        return Incoming::Ignored;
    }
    let message = match ClusterMessage::decode(payload, MAX_MESSAGE) {
        Ok(message) => message,
        Err(error) => return Incoming::Dropped(Dropped::Malformed(error)),
    };
    let Some(&(nsp, uid)) = claimed.iter().find(|(nsp, _)| *nsp == message.nsp) else {
        return Incoming::Dropped(Dropped::Unexpected);
    };
    if message.uid == uid {
        return Incoming::Ignored;
    }
    let asker = message.uid;
    let query = |request_id: String, opts: BroadcastOpts| RemoteQuery {
        nsp: nsp.to_owned(),
        request_id,
        rooms: opts.rooms,
        except: opts.except,
        reply_to: Some(asker.clone()),
    };
    let apply = |opts, action| operation(nsp, opts, action);
    match message.body {
        ClusterBody::Broadcast {
            request_id,
            packet,
            opts,
        } => {
            if packet.kind != 2 {
                return Incoming::Dropped(Dropped::Unexpected);
            }
            let event = match notepack::decode_event(packet.data) {
                Ok(event) => event,
                Err(error) => return Incoming::Dropped(Dropped::BadEvent(error)),
            };
            let flags = opts.flags.unwrap_or_default();
            let volatile = flags.volatile.unwrap_or(false);
            match request_id {
                None => Incoming::Broadcast(RemoteBroadcast {
                    nsp: nsp.to_owned(),
                    rooms: opts.rooms,
                    except: opts.except,
                    volatile,
                    event,
                    offset: opts.offset,
                }),
                Some(request_id) => Incoming::AckBroadcast(RemoteAckBroadcast {
                    query: query(request_id, opts),
                    volatile,
                    event,
                    timeout_ms: flags.timeout,
                }),
            }
        }
        ClusterBody::SocketsJoin { opts, rooms } => apply(opts, RemoteAction::Join(rooms)),
        ClusterBody::SocketsLeave { opts, rooms } => apply(opts, RemoteAction::Leave(rooms)),
        ClusterBody::DisconnectSockets { opts, close } => {
            apply(opts, RemoteAction::Disconnect { close })
        }
        ClusterBody::FetchSockets { opts, request_id } => Incoming::Fetch(query(request_id, opts)),
        ClusterBody::ServerSideEmit { request_id, packet } => {
            match notepack::decode_event(packet) {
                Ok(event) => Incoming::ServerEvent(RemoteServerEvent {
                    nsp: nsp.to_owned(),
                    ack: request_id.map(|id| query(id, BroadcastOpts::default())),
                    event,
                }),
                Err(error) => Incoming::Dropped(Dropped::BadEvent(error)),
            }
        }
        // Answers count wherever they arrive (Node reads one on the main channel too).
        ClusterBody::FetchSocketsResponse {
            request_id,
            sockets,
        } => answer(nsp, uid, &request_id, Ok(AnswerReply::Sockets(sockets))),
        ClusterBody::BroadcastClientCount {
            request_id,
            client_count,
        } => answer(
            nsp,
            uid,
            &request_id,
            Ok(AnswerReply::Recipients(client_count)),
        ),
        ClusterBody::BroadcastAck { request_id, packet } => {
            let reply = notepack::decode_value(packet).map(AnswerReply::Ack);
            answer(nsp, uid, &request_id, reply)
        }
        ClusterBody::ServerSideEmitResponse { request_id, packet } => {
            let reply = notepack::decode_value(packet).map(AnswerReply::ServerAck);
            answer(nsp, uid, &request_id, reply)
        }
        // Heartbeats belong to the heartbeat-based cluster adapters, not this one.
        ClusterBody::InitialHeartbeat | ClusterBody::Heartbeat | ClusterBody::AdapterClose => {
            Incoming::Ignored
        }
    }
}

/// An answer for the question `request_id` of this node (uid `uid`), ignored when the id is
/// not one of this node's.
fn answer(
    nsp: &str,
    uid: &str,
    request_id: &str,
    reply: Result<AnswerReply, notepack::NotepackError>,
) -> Incoming {
    let Some((_, asker)) = parse_request_id(request_id, uid) else {
        return Incoming::Ignored;
    };
    match reply {
        Ok(reply) => Incoming::Answer(Answer {
            nsp: nsp.to_owned(),
            asker,
            reply,
        }),
        Err(error) => Incoming::Dropped(Dropped::BadEvent(error)),
    }
}
