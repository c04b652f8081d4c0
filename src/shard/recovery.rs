//! Connection state recovery across the nodes of a cluster and their restarts, kept in Redis
//! (`socketio::SharedRecovery` over the process's `RedisLink`): a stream per namespace logs
//! the stored packets each node sends, a key per lost session holds it for the window, and a
//! hash per node holds its connected sockets' sessions for their return should the node die
//! (its heartbeat key says whether it lives). Nothing here blocks a shard: writes go to the
//! link's bounded queues, a restore is a future of the link's answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cluster::{self, LocalBroadcast};
use crate::config::{self, RecoveryConfig};
use crate::net::redis::RedisLink;
use crate::socketio::{
    recovery_node_of, Broadcast, EventArgs, Logged, RecoverySession, RestoreFuture, Restored,
    SharedRecovery,
};

/// How often a node says it lives, and how long the word lasts: a node silent this long is
/// taken for dead, and the sessions it held become restorable elsewhere.
const HEARTBEAT: Duration = Duration::from_millis(500);
const ALIVE_FOR: Duration = Duration::from_secs(2);

/// The longest offset taken from another node's message (ringcast's are about 30 bytes):
/// clients keep it and send it back.
pub(super) const MAX_OFFSET: usize = 64;

/// One process's recovery state in Redis; each shard has a clone.
#[derive(Clone)]
pub(crate) struct RedisRecovery {
    link: RedisLink,
    /// The cluster's key prefix.
    prefix: Arc<str>,
    /// This node's tag: unique to this run of this process.
    node: Arc<str>,
    window: Duration,
    max_packets: usize,
    /// The parser this server's clients speak: a restore encodes the logged events in it.
    parser: config::Parser,
}

/// A session as Redis keeps it (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    nsp: String,
    sid: String,
    pid: String,
    rooms: Vec<String>,
    /// `socket.data` as JSON text.
    data: Option<String>,
    /// The node it was connected to (its `local()` broadcasts reached it).
    node: String,
}

impl RedisRecovery {
    pub(crate) fn new(
        link: RedisLink,
        prefix: &str,
        config: &RecoveryConfig,
        parser: config::Parser,
        node: Arc<str>,
    ) -> RedisRecovery {
        RedisRecovery {
            link,
            prefix: format!("{prefix}-ringcast").into(),
            node,
            window: config.window,
            max_packets: config.max_packets.max(1),
            parser,
        }
    }

    /// How often [`RedisRecovery::beat`] must run.
    pub(crate) fn heartbeat(&self) -> Duration {
        HEARTBEAT
    }

    /// Says this node lives, and keeps its connected sockets' sessions for a window past its
    /// last word.
    pub(crate) fn beat(&self) {
        let _ = self
            .link
            .queue_set_px(self.beat_key(&self.node), "1", millis(ALIVE_FOR));
        let _ = self
            .link
            .pexpire(self.live_key(&self.node), millis(self.window + ALIVE_FOR));
    }

    fn log_key(&self, nsp: &str) -> String {
        format!("{}#log#{nsp}", self.prefix)
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}#session#{pid}", self.prefix)
    }

    fn live_key(&self, node: &str) -> String {
        format!("{}#live#{node}", self.prefix)
    }

    fn beat_key(&self, node: &str) -> String {
        format!("{}#beat#{node}", self.prefix)
    }

    /// Logs a stored broadcast another server published (a Node server's, an emitter's),
    /// with the offset this node gave it, as one only this node's sockets got: each node
    /// delivers it with its own offset.
    pub(crate) fn log_delivered(
        &self,
        nsp: &str,
        offset: &str,
        rooms: &[String],
        except: &[String],
        event: &str,
        args: &EventArgs,
    ) {
        let boxed = |names: &[String]| -> Vec<Box<str>> {
            names.iter().map(|n| n.as_str().into()).collect()
        };
        self.log(&Logged {
            nsp,
            offset,
            rooms: &boxed(rooms),
            except: &boxed(except),
            local: true,
            event,
            args,
        });
    }

    fn kept(&self, session: &RecoverySession) -> String {
        let kept = Kept {
            nsp: session.nsp.to_string(),
            sid: session.sid.to_string(),
            pid: session.pid.to_string(),
            rooms: session.rooms.iter().map(|r| r.to_string()).collect(),
            data: session.data.as_ref().map(|d| d.to_string()),
            node: self.node.to_string(),
        };
        serde_json::to_string(&kept).unwrap_or_default()
    }
}

impl SharedRecovery for RedisRecovery {
    fn node(&self) -> &str {
        &self.node
    }

    fn log(&self, packet: &Logged<'_>) {
        let broadcast = LocalBroadcast {
            nsp: packet.nsp,
            rooms: packet.rooms,
            except: packet.except,
            volatile: false,
            event: packet.event,
            args: packet.args.json_bytes(),
            attachments: packet.args.attachments(),
            offset: Some(packet.offset),
        };
        let entry = match cluster::log_entry(&broadcast) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::debug!(%error, "a stored packet could not be logged");
                return;
            }
        };
        let mut fields = vec![
            ("o", Bytes::copy_from_slice(packet.offset.as_bytes())),
            ("m", Bytes::from(entry)),
        ];
        if packet.local {
            fields.push(("n", Bytes::copy_from_slice(self.node.as_bytes())));
        }
        // A full queue drops it (counted with the publishes): a client that missed it then
        // misses it again, or gets a fresh session.
        let _ = self
            .link
            .append(self.log_key(packet.nsp), self.max_packets, fields);
    }

    fn live(&self, session: &RecoverySession) {
        let _ = self.link.hset(
            self.live_key(&self.node),
            session.pid.to_string(),
            self.kept(session),
        );
    }

    fn left(&self, pid: &str) {
        let _ = self.link.hdel(self.live_key(&self.node), pid);
    }

    fn keep(&self, session: &RecoverySession) {
        let _ = self.link.queue_set_px(
            self.session_key(&session.pid),
            self.kept(session),
            millis(self.window),
        );
        self.left(&session.pid);
    }

    fn restore(
        &self,
        nsp: &str,
        pid: &str,
        offset: &str,
        local: Option<Box<Restored>>,
    ) -> RestoreFuture {
        let taken = self.link.getdel(self.session_key(pid));
        let local_kept = local.as_ref().map(|local| self.kept(&local.session));
        // A dead node's connected socket: its node's hash has it, once the node is silent.
        let orphan = recovery_node_of(pid)
            .filter(|node| *node != &*self.node)
            .map(|node| (self.beat_key(node), self.live_key(node)));
        let link = self.link.clone();
        let log = LogReader {
            link: self.link.clone(),
            key: self.log_key(nsp),
            nsp: nsp.to_owned(),
            pid: pid.to_owned(),
            offset: offset.to_owned(),
            max_packets: self.max_packets,
            parser: self.parser,
        };
        Box::pin(async move {
            let kept = match (taken.await, local) {
                // Redis can't say, or this process kept the very session the cluster holds
                // (or one Redis never got): its own log is the exact one.
                (Err(_), local) => return local,
                (Ok(Some(json)), Some(local)) if Some(&json) == local_kept.as_ref() => {
                    return Some(local)
                }
                (Ok(None), Some(local)) => return Some(local),
                (Ok(Some(json)), _) => json,
                (Ok(None), None) => {
                    let (beat, live) = orphan?;
                    // Alive, or unknown: the node still holds its socket.
                    if link.exists(beat).await != Ok(false) {
                        return None;
                    }
                    let json = link.hget(live.clone(), log.pid.clone()).await.ok()??;
                    let _ = link.hdel(live, log.pid.clone());
                    json
                }
            };
            log.read(serde_json::from_str(&kept).ok()?).await
        })
    }
}

/// What a restore from the cluster's log needs, owned by its future.
struct LogReader {
    link: RedisLink,
    key: String,
    nsp: String,
    pid: String,
    offset: String,
    max_packets: usize,
    parser: config::Parser,
}

impl LogReader {
    /// The session `kept` and every logged packet after the offset that reached it, oldest
    /// first; `None` when the session is another's or the offset is not in the log.
    async fn read(self, kept: Kept) -> Option<Box<Restored>> {
        if kept.nsp != self.nsp || kept.pid != self.pid {
            return None;
        }
        let offset = Bytes::from(self.offset.into_bytes());
        let entries = self
            .link
            .stream_after(self.key, "o", offset, self.max_packets)
            .await
            .ok()??;
        let rooms: Vec<Box<str>> = kept.rooms.iter().map(|r| r.as_str().into()).collect();
        let missed = entries
            .iter()
            .filter(|entry| {
                // A `local()` broadcast reached only its node's sockets.
                entry
                    .field("n")
                    .is_none_or(|node| node.as_ref() == kept.node.as_bytes())
            })
            .filter_map(|entry| cluster::read_log_entry(entry.field("m")?).ok())
            .filter(|packet| {
                crate::socketio::recovery_reaches(&packet.rooms, &packet.except, &rooms)
            })
            .map(|packet| {
                let event = packet.event;
                let args = EventArgs::from_parts(event.args, event.count, event.attachments);
                let offset = packet.offset.unwrap_or_default().into();
                Broadcast::remote(self.parser, &packet.nsp, &event.name, args, Some(offset)).frames
            })
            .collect();
        let session = RecoverySession {
            nsp: kept.nsp.into(),
            sid: kept.sid.into(),
            pid: kept.pid.into(),
            rooms,
            data: kept.data.map(String::into_boxed_str),
        };
        Some(Box::new(Restored { session, missed }))
    }
}

/// A fresh node tag: 48 random bits, 8 URL-safe characters.
pub(super) fn node_tag() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 6];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Without the system's randomness, the time: unique enough across restarts.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
