//! The `api-emit` scenario: N WebSocket members join one room (with the bench contract's
//! `join`), then one keep-alive HTTP/1.1 connection to the server's HTTP API posts
//! `/v1/emit` to that room at a fixed rate (or `/v1/batch` with K emit ops per request).
//! Each emit carries its sender, sequence number and send time (the instant its request
//! is written) in its one argument; the latency of an emit is the time from that write to
//! the moment the LAST of the N members has it. Every delivery is checked (count, order,
//! content), as in fanout.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::io::{OwnedReadHalf, Splitable};
use monoio::net::TcpStream;

use crate::conn::{self, ConnError, FrameBuf};
use crate::payload::{self, Stamp};
use crate::run::{self, Counters, Phase, Run};
use crate::scenarios::{
    await_ack, read_message, send_text, wait_phase, Read, Worker, CONNECT_LIMIT,
};
use crate::signal::Signal;
use crate::wire::{self, Incoming};

/// The room every member joins.
const ROOM: &str = "r0";

/// Emits whose last delivery is awaited at once, at most: a slot is reused after this many
/// emits (over a million: at 100k emits/s, ten seconds in flight).
const SLOTS: usize = 1 << 20;

/// The shape of an api-emit run.
#[derive(Debug, Clone)]
pub struct ApiEmit {
    /// Members (WebSocket clients in the room); the emitter is one more task, client `members`.
    pub members: usize,
    /// Requests per second (0: the next as soon as the previous one is answered).
    pub rate: f64,
    /// Emit ops per request: 1 posts `/v1/emit`, more post `/v1/batch`.
    pub batch: usize,
    pub payload: usize,
    /// Where the API listens, as `host:port` (also the `Host` header).
    pub api_addr: String,
    pub api_key: String,
    /// Requests written and not yet answered, at most (pipelined on the one connection).
    pub window: u32,
}

/// Per emit (by sequence number, modulo [`SLOTS`]): how many members have it and when the
/// latest of them got it. Shared by every worker thread.
pub struct Tally {
    slots: Box<[(AtomicU32, AtomicU64)]>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            slots: (0..SLOTS)
                .map(|_| (AtomicU32::new(0), AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl Tally {
    /// Records that one member got emit `seq` at `received_ns`; once all `members` have it,
    /// the time the last one got it (and the slot is cleared for reuse).
    pub fn receive(&self, seq: u64, received_ns: u64, members: u32) -> Option<u64> {
        let (count, latest) = &self.slots[(seq % SLOTS as u64) as usize];
        latest.fetch_max(received_ns, Ordering::AcqRel);
        if count.fetch_add(1, Ordering::AcqRel) + 1 < members {
            return None;
        }
        let last = latest.swap(0, Ordering::AcqRel);
        count.store(0, Ordering::Release);
        Some(last)
    }
}

/// Appends one emit of `args` (JSON) to room [`ROOM`] on `/`, as the fields of a `/v1/emit`
/// body or, with `op`, of a `/v1/batch` op.
pub fn put_emit(out: &mut Vec<u8>, args: &[u8], op: bool) {
    out.push(b'{');
    if op {
        out.extend_from_slice(br#""op":"emit","#);
    }
    out.extend_from_slice(br#""namespace":"/","to":{"rooms":[""#);
    out.extend_from_slice(ROOM.as_bytes());
    out.extend_from_slice(br#""]},"event":"message","args":["#);
    out.extend_from_slice(args);
    out.extend_from_slice(b"]}");
}

/// Appends a whole HTTP/1.1 POST with a JSON body.
pub fn put_request(out: &mut Vec<u8>, path: &str, host: &str, key: &str, body: &[u8]) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nAuthorization: Bearer ");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    wire::put_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Checks a `/v1/batch` answer: `{"results":[...]}` with `ops` results, each `{"ok":...}`.
pub fn check_batch(body: &[u8], ops: usize) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("batch answer is not JSON: {e}"))?;
    let results = value
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or("batch answer without `results`")?;
    if results.len() != ops {
        return Err(format!(
            "batch answered {} results for {ops} ops",
            results.len()
        ));
    }
    match results.iter().find(|r| r.get("ok").is_none()) {
        Some(failed) => Err(format!("a batch op failed: {failed}")),
        None => Ok(()),
    }
}

/// One member or (client `members`) the emitter.
pub async fn api_emit_client(
    worker: Rc<Worker>,
    client: usize,
    shape: Rc<ApiEmit>,
    tally: std::sync::Arc<Tally>,
) {
    let result = if client == shape.members {
        emitter(&worker, &shape).await
    } else {
        member(&worker, client, &shape, &tally).await
    };
    if let Err(error) = result {
        if worker.run.phase() < Phase::Done {
            worker.fail(client, error);
        }
    }
}

/// Connects, joins [`ROOM`], then checks and tallies every emit it gets.
async fn member(
    worker: &Worker,
    client: usize,
    shape: &ApiEmit,
    tally: &Tally,
) -> Result<(), ConnError> {
    let mut socket = conn::open_socket_within(worker.target(client), client, CONNECT_LIMIT).await?;
    let mut text = Vec::new();
    let room_json = format!("\"{ROOM}\"");
    wire::put_event(&mut text, "join", Some(1), &[room_json.as_bytes()]);
    let mut out = Vec::new();
    send_text(&mut socket.stream, &mut out, &text, socket.mask).await?;
    await_ack(&mut socket, 1, None, &mut out).await?;
    Counters::add(&worker.counters().ready, 1);
    let members = u32::try_from(shape.members).unwrap_or(u32::MAX);
    let mut last_seq = 0u64;
    loop {
        let received_ns = worker.run.now_ns();
        let mut pong = false;
        while let Some((opcode, data)) = socket.frames.next()? {
            match read_message(opcode, data)? {
                Read::Text(Incoming::Event(args)) => {
                    let Some(stamp) = payload::message_content(args)
                        .and_then(|content| payload::check(content).ok())
                    else {
                        Counters::add(&worker.counters().corrupt, 1);
                        continue;
                    };
                    if stamp.seq <= last_seq {
                        Counters::add(&worker.counters().reordered, 1);
                    }
                    last_seq = last_seq.max(stamp.seq);
                    let counters = worker.counters();
                    Counters::add(&counters.done, 1);
                    if let Some(last_ns) = tally.receive(stamp.seq, received_ns, members) {
                        if worker.run.in_window(stamp.sent_ns) {
                            Counters::add(&counters.measured, 1);
                            run::record(
                                &mut worker.histogram.borrow_mut(),
                                last_ns.saturating_sub(stamp.sent_ns),
                            );
                        }
                    }
                }
                Read::Text(Incoming::Ping) => pong = true,
                _ => {}
            }
        }
        if pong {
            send_text(&mut socket.stream, &mut out, b"3", socket.mask).await?;
        }
        socket.frames.fill(&mut socket.stream).await?;
    }
}

/// Posts the emits over one keep-alive connection: on schedule (or, at rate 0, as fast as
/// the window allows), with at most `window` requests written and not yet answered
/// (HTTP/1.1 pipelining; a window of 1 waits for each answer before the next request).
async fn emitter(worker: &Rc<Worker>, shape: &ApiEmit) -> Result<(), ConnError> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&shape.api_addr)
        .map_err(ConnError::Io)?
        .next()
        .ok_or_else(|| {
            ConnError::Handshake(format!("--api-addr {} resolves to nothing", shape.api_addr))
        })?;
    let stream = TcpStream::connect_addr(addr).await?;
    stream.set_nodelay(true)?;
    Counters::add(&worker.counters().ready, 1);
    wait_phase(&worker.run, Phase::Warmup).await;
    let (reader, mut writer) = stream.into_split();
    let in_flight = Rc::new(Cell::new(0u32));
    let answered = Rc::new(Signal::default());
    monoio::spawn(answers(
        worker.clone(),
        reader,
        shape.batch,
        in_flight.clone(),
        answered.clone(),
    ));
    let run: &Run = &worker.run;
    let path = if shape.batch > 1 {
        "/v1/batch"
    } else {
        "/v1/emit"
    };
    let interval = if shape.rate > 0.0 {
        (1e9 / shape.rate) as u64
    } else {
        0
    };
    let window = shape.window.max(1);
    let (mut body, mut arg, mut request) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = 0u64;
    let mut due = run.now_ns();
    while run.phase() < Phase::Drain {
        if in_flight.get() >= window {
            monoio::select! {
                _ = answered.wait() => {}
                _ = monoio::time::sleep(Duration::from_millis(1)) => {}
            }
            continue;
        }
        if interval > 0 {
            let now = run.now_ns();
            if due > now {
                monoio::time::sleep(Duration::from_nanos(due - now)).await;
                continue;
            }
            // Behind by more than 100 ms (the window was full, or this thread stalled): no
            // burst to catch up, the schedule starts again from now.
            if now.saturating_sub(due) > 100_000_000 {
                due = now;
            }
            due += interval;
        }
        let sent_ns = run.now_ns();
        body.clear();
        if shape.batch > 1 {
            body.extend_from_slice(br#"{"ops":["#);
        }
        for op in 0..shape.batch.max(1) {
            seq += 1;
            arg.clear();
            payload::put(
                &mut arg,
                Stamp {
                    sender: 0,
                    seq,
                    sent_ns,
                },
                shape.payload,
            );
            if op > 0 {
                body.push(b',');
            }
            put_emit(&mut body, &arg, shape.batch > 1);
        }
        if shape.batch > 1 {
            body.extend_from_slice(b"]}");
        }
        request.clear();
        put_request(&mut request, path, &shape.api_addr, &shape.api_key, &body);
        let ops = shape.batch.max(1) as u64;
        let counters = worker.counters();
        Counters::add(&counters.sent, ops);
        Counters::add(&counters.expected, ops * shape.members as u64);
        in_flight.set(in_flight.get() + 1);
        let (result, buf) = writer.write_all(std::mem::take(&mut request)).await;
        request = buf;
        result?;
    }
    // Keep the connection until the run ends (closing it is not part of the measure).
    wait_phase(run, Phase::Done).await;
    Ok(())
}

/// Reads the answers to the emitter's requests, in order, and checks each.
async fn answers(
    worker: Rc<Worker>,
    mut reader: OwnedReadHalf<TcpStream>,
    batch: usize,
    in_flight: Rc<Cell<u32>>,
    answered: Rc<Signal>,
) {
    let mut responses = FrameBuf::new(64 * 1024);
    loop {
        let checked = match responses.read_response(&mut reader).await {
            Ok((status, range)) if !(200..300).contains(&status) => Err(format!(
                "the API answered {status}: {}",
                String::from_utf8_lossy(responses.bytes(range))
            )),
            Ok((_, range)) if batch > 1 => check_batch(responses.bytes(range), batch),
            Ok(_) => Ok(()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = checked {
            if worker.run.phase() < Phase::Done {
                worker
                    .run
                    .fail(worker.index, format!("API connection: {error}"));
            }
            return;
        }
        in_flight.set(in_flight.get().saturating_sub(1));
        answered.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_json_the_api_takes() {
        let mut body = Vec::new();
        put_emit(&mut body, b"\"0:1:2:ab\"", false);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({"namespace": "/", "to": {"rooms": ["r0"]}, "event": "message",
                "args": ["0:1:2:ab"]})
        );
        body.clear();
        put_emit(&mut body, b"1", true);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(value["op"], "emit");
        let mut request = Vec::new();
        put_request(&mut request, "/v1/emit", "127.0.0.1:9", "k", b"{}");
        assert_eq!(
            request,
            b"POST /v1/emit HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Bearer k\r\n\
              Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn batch_answers_are_checked() {
        assert_eq!(
            check_batch(br#"{"results":[{"ok":{}},{"ok":{}}]}"#, 2),
            Ok(())
        );
        assert!(check_batch(br#"{"results":[{"ok":{}}]}"#, 2).is_err());
        assert!(check_batch(br#"{"results":[{"ok":{}},{"error":{"code":"x"}}]}"#, 2).is_err());
        assert!(check_batch(b"not json", 1).is_err());
        assert!(check_batch(br#"{"other":1}"#, 1).is_err());
    }

    #[test]
    fn the_last_member_closes_an_emit() {
        let tally = Tally::default();
        assert_eq!(tally.receive(7, 100, 3), None);
        assert_eq!(tally.receive(7, 300, 3), None);
        // The last to arrive reports the latest time, even if its own clock read is earlier.
        assert_eq!(tally.receive(7, 200, 3), Some(300));
        // The slot is clear for the emit that reuses it.
        assert_eq!(tally.receive(7 + SLOTS as u64, 50, 1), Some(50));
    }
}
