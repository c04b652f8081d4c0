//! The churn soak: a few stable clients stay in their rooms for the whole run and check every
//! message; every other client loops (connect, join a room, publish, see its own message come
//! back, leave, cleanly or abruptly) until the run ends. Afterwards the server should hold
//! nothing: `check_settled` asks its stats endpoint.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::conn;
use crate::payload::{self, Stamp};
use crate::run::{Counters, Phase};
use crate::scenarios::{
    await_ack, read_message, send_text, wait_phase, Read, SenderOrder, Worker, CONNECT_LIMIT,
};
use crate::wire::{self, Incoming};

/// The shape of a churn run.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Clients `0..stable` stay; the others churn.
    pub stable: usize,
    pub rooms: usize,
    /// Messages each churning client publishes per visit.
    pub publishes: usize,
    pub payload: usize,
}

impl Churn {
    fn room_of(&self, client: usize) -> usize {
        client % self.rooms
    }

    /// Stable clients in `room`: the recipients every publish there is checked against.
    fn stable_members(&self, room: usize) -> u64 {
        (self.stable / self.rooms + usize::from(room < self.stable % self.rooms)) as u64
    }
}

/// One client of a churn run: stable or churning by its index.
pub async fn churn_client(worker: Rc<Worker>, client: usize, shape: Churn) {
    let counters = worker.counters();
    let churns = client >= shape.stable;
    Counters::add(&counters.active, 1);
    if churns {
        Counters::add(&counters.churning, 1);
    }
    let result = if churns {
        churning(&worker, client, shape).await
    } else {
        stable(&worker, client, shape).await
    };
    if let Err(error) = result {
        if worker.run.phase() < Phase::Done {
            worker.fail(client, error);
        }
    }
    if churns {
        counters
            .churning
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    counters
        .active
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

fn room_json(room: usize) -> Vec<u8> {
    let mut json = b"\"r".to_vec();
    wire::put_decimal(&mut json, room as u64);
    json.push(b'"');
    json
}

/// Joins its room and reads until the run is over, checking every message.
async fn stable(worker: &Rc<Worker>, client: usize, shape: Churn) -> Result<(), conn::ConnError> {
    let mut socket = conn::open_socket_within(worker.target(client), client, CONNECT_LIMIT).await?;
    let mut text = Vec::new();
    let mut out = Vec::new();
    wire::put_event(
        &mut text,
        "join",
        Some(1),
        &[&room_json(shape.room_of(client))],
    );
    send_text(&mut socket.stream, &mut out, &text, socket.mask).await?;
    await_ack(&mut socket, 1, None, &mut out).await?;
    Counters::add(&worker.counters().ready, 1);
    let mut order = SenderOrder::default();
    let done = std::pin::pin!(wait_phase(&worker.run, Phase::Done));
    let mut done = done;
    loop {
        let received_ns = worker.run.now_ns();
        let mut pong = false;
        while let Some((opcode, data)) = socket.frames.next()? {
            match read_message(opcode, data)? {
                Read::Text(Incoming::Event(args)) => {
                    order.receive(worker, args, received_ns);
                }
                Read::Text(Incoming::Ping) => pong = true,
                _ => {}
            }
        }
        if pong {
            send_text(&mut socket.stream, &mut out, b"3", socket.mask).await?;
        }
        monoio::select! {
            filled = socket.frames.fill(&mut socket.stream) => filled?,
            () = &mut done => return Ok(()),
        }
    }
}

/// Visits its room again and again until the run drains.
async fn churning(worker: &Rc<Worker>, client: usize, shape: Churn) -> Result<(), conn::ConnError> {
    let sender = client as u32;
    let room = room_json(shape.room_of(client));
    let recipients = shape.stable_members(shape.room_of(client));
    let mut seq = 0u64;
    let (mut text, mut out, mut body) = (Vec::new(), Vec::new(), Vec::new());
    let mut visits = 0u64;
    while worker.run.phase() < Phase::Drain {
        let mut socket =
            conn::open_socket_within(worker.target(client), client, CONNECT_LIMIT).await?;
        text.clear();
        wire::put_event(&mut text, "join", Some(1), &[&room]);
        send_text(&mut socket.stream, &mut out, &text, socket.mask).await?;
        await_ack(&mut socket, 1, None, &mut out).await?;
        if visits == 0 {
            // Ready once joined; publishing waits until every client is, so that no stable
            // client misses a message by joining late.
            Counters::add(&worker.counters().ready, 1);
            // Nothing is published before then, so nothing piles up unread meanwhile.
            wait_phase(&worker.run, Phase::Warmup).await;
        }
        // Everything published in one write, counted as sent before it leaves.
        out.clear();
        for _ in 0..shape.publishes {
            seq += 1;
            body.clear();
            let stamp = Stamp {
                sender,
                seq,
                sent_ns: worker.run.now_ns(),
            };
            payload::put(&mut body, stamp, shape.payload);
            text.clear();
            wire::put_event(&mut text, "publish", None, &[&room, &body]);
            wire::put_frame(&mut out, wire::OP_TEXT, &text, socket.mask);
            let counters = worker.counters();
            Counters::add(&counters.sent, 1);
            Counters::add(&counters.expected, recipients);
        }
        let (result, written) =
            monoio::io::AsyncWriteRentExt::write_all(&mut socket.stream, out).await;
        out = written;
        result.map_err(conn::ConnError::Io)?;
        // Its own last message coming back means the server has handled every publish.
        await_own(&mut socket, sender, seq).await?;
        visits += 1;
        if visits % 2 == 0 {
            // A clean goodbye: a WebSocket close frame. The other half just vanish.
            out.clear();
            wire::put_frame(
                &mut out,
                wire::OP_CLOSE,
                &1000u16.to_be_bytes(),
                socket.mask,
            );
            let (_, written) =
                monoio::io::AsyncWriteRentExt::write_all(&mut socket.stream, out).await;
            out = written;
        }
    }
    Ok(())
}

/// Reads until this client's own message `seq` comes back (answering pings).
async fn await_own(
    socket: &mut conn::Socket,
    sender: u32,
    seq: u64,
) -> Result<(), conn::ConnError> {
    let mut out = Vec::new();
    loop {
        let mut pong = false;
        let mut back = false;
        while let Some((opcode, data)) = socket.frames.next()? {
            match read_message(opcode, data)? {
                Read::Text(Incoming::Event(args)) => {
                    let stamp = payload::message_content(args).and_then(|c| payload::check(c).ok());
                    back |= stamp.is_some_and(|s| s.sender == sender && s.seq == seq);
                }
                Read::Text(Incoming::Ping) => pong = true,
                _ => {}
            }
        }
        if pong {
            send_text(&mut socket.stream, &mut out, b"3", socket.mask).await?;
        }
        if back {
            return Ok(());
        }
        socket.frames.fill(&mut socket.stream).await?;
    }
}

/// Polls the server's stats endpoint (`http://host:port/path`) until it holds no session,
/// socket, room or timer, for up to `within`. The last totals, and whether they reached zero.
pub fn check_settled(url: &str, within: Duration) -> Result<(serde_json::Value, bool), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let started = Instant::now();
    loop {
        let totals = fetch_totals(host, path)?;
        let settled = [
            "sessions",
            "websockets",
            "engine_timers",
            "clients",
            "sockets",
            "rooms",
            "socketio_timers",
        ]
        .iter()
        .all(|field| totals[field].as_u64() == Some(0));
        if settled || started.elapsed() >= within {
            return Ok((totals, settled));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fetch_totals(host: &str, path: &str) -> Result<serde_json::Value, String> {
    let mut stream = TcpStream::connect(host).map_err(|e| format!("stats: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("stats: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("stats: {e}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .ok_or("stats: no body")?;
    let stats: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("stats: {e}: {body}"))?;
    Ok(stats["total"].clone())
}
