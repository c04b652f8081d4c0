//! The WebSocket scenarios, as the tasks one worker thread runs for its share of the
//! clients: `connect` (connect and hold), `fanout` (rooms, publishers, deliveries; on one
//! server or across a cluster's nodes) and `echo` (closed-loop acks). Every message is
//! checked; every failure is counted.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, Splitable};

use crate::conn::{self, ConnError, Placement, Socket, Target};
use crate::payload::{self, Stamp};
use crate::run::{self, Counters, Phase, Run};
use crate::signal::Signal;
use crate::wire::{self, Incoming};

/// How long one client may take to connect before it counts as failed.
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// One worker thread's share of a run.
pub struct Worker {
    pub index: usize,
    pub run: Arc<Run>,
    /// The servers' addresses: one, or the nodes of a cluster.
    pub targets: Arc<[Target]>,
    /// Which of `targets` each client connects to.
    pub placement: Placement,
    /// The global indices of the clients this worker drives.
    pub clients: Vec<usize>,
    pub histogram: RefCell<Histogram<u64>>,
}

impl Worker {
    /// The server client `client` connects to.
    pub fn target(&self, client: usize) -> &Target {
        &self.targets[self.placement.server_of(client) % self.targets.len()]
    }

    pub fn counters(&self) -> &Counters {
        &self.run.workers[self.index]
    }

    pub fn fail(&self, client: usize, error: impl std::fmt::Display) {
        self.run
            .fail(self.index, format!("client {client}: {error}"));
    }

    /// Records one unit of work whose clock started at `sent_ns`, done now.
    pub fn done(&self, sent_ns: u64) {
        self.done_at(sent_ns, self.run.now_ns());
    }

    /// Records one unit of work whose clock started at `sent_ns`, done at `now_ns`.
    fn done_at(&self, sent_ns: u64, now_ns: u64) {
        let counters = self.counters();
        Counters::add(&counters.done, 1);
        if self.run.in_window(sent_ns) {
            Counters::add(&counters.measured, 1);
            let latency = now_ns.saturating_sub(sent_ns);
            run::record(&mut self.histogram.borrow_mut(), latency);
        }
    }

    /// Records one unit of work that is checked (it counts against `expected`) but not
    /// measured: neither in the rate nor in the latency.
    fn done_unmeasured(&self) {
        Counters::add(&self.counters().done, 1);
    }
}

/// Sleeps in small steps until the run reaches `phase`.
pub async fn wait_phase(run: &Run, phase: Phase) {
    while run.phase() < phase {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Writes one masked text frame.
pub(crate) async fn send_text<W: AsyncWriteRent>(
    io: &mut W,
    out: &mut Vec<u8>,
    text: &[u8],
    mask: [u8; 4],
) -> Result<(), ConnError> {
    out.clear();
    wire::put_frame(out, wire::OP_TEXT, text, mask);
    let (result, buf) = io.write_all(std::mem::take(out)).await;
    *out = buf;
    result.map(drop).map_err(ConnError::Io)
}

/// What a received message means for a scenario that only reads.
pub(crate) enum Read<'a> {
    Text(Incoming<'a>),
    Skip,
}

/// Interprets one WebSocket message: close frames and Engine.IO closes end the client.
pub(crate) fn read_message(opcode: u8, data: &[u8]) -> Result<Read<'_>, ConnError> {
    match opcode {
        wire::OP_TEXT => match wire::classify(data) {
            Incoming::Closed => Err(ConnError::Closed),
            incoming => Ok(Read::Text(incoming)),
        },
        wire::OP_CLOSE => Err(ConnError::Closed),
        _ => Ok(Read::Skip),
    }
}

// ---------------------------------------------------------------------------------------
// connect

/// Connects the worker's clients, `concurrency` at a time, has each join `rooms` rooms, and
/// holds them until the run ends.
pub async fn connect(worker: Rc<Worker>, concurrency: usize, rooms: usize) {
    let in_progress = Rc::new(Cell::new(0usize));
    let slot_freed = Rc::new(Signal::default());
    for &client in &worker.clients {
        while in_progress.get() >= concurrency.max(1) {
            slot_freed.wait().await;
        }
        in_progress.set(in_progress.get() + 1);
        let (worker, in_progress, slot_freed) =
            (worker.clone(), in_progress.clone(), slot_freed.clone());
        monoio::spawn(async move {
            let started = worker.run.now_ns();
            let opened = match conn::open_socket_within(
                worker.target(client),
                client,
                CONNECT_LIMIT,
            )
            .await
            {
                Ok(mut socket) => join_rooms(&mut socket, rooms).await.map(|()| socket),
                Err(error) => Err(error),
            };
            in_progress.set(in_progress.get() - 1);
            slot_freed.raise();
            match opened {
                Ok(socket) => {
                    worker.done(started);
                    Counters::add(&worker.counters().ready, 1);
                    if let Err(error) = hold(socket).await {
                        if worker.run.phase() < Phase::Done {
                            worker.fail(client, error);
                        }
                    }
                }
                Err(error) => worker.fail(client, error),
            }
        });
    }
    wait_phase(&worker.run, Phase::Done).await;
}

/// Joins rooms `k0` .. `k<rooms - 1>`, one `join` with an ack at a time; an ack that is not
/// empty (`[]`) is an error (e.g. the server's room limit).
async fn join_rooms(socket: &mut Socket, rooms: usize) -> Result<(), ConnError> {
    let (mut name, mut text, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for room in 0..rooms as u64 {
        name.clear();
        name.extend_from_slice(b"\"k");
        wire::put_decimal(&mut name, room);
        name.push(b'"');
        text.clear();
        wire::put_event(&mut text, "join", Some(room + 1), &[&name]);
        send_text(&mut socket.stream, &mut out, &text, socket.mask).await?;
        let args = await_ack_args(socket, room + 1, &mut out).await?;
        if args != b"[]" {
            return Err(ConnError::Refused(format!(
                "join k{room} answered {}",
                String::from_utf8_lossy(&args)
            )));
        }
    }
    Ok(())
}

/// Waits until fewer than `limit` of the first `spawned` clients of this worker are still
/// setting up (neither ready nor failed), or the run is over.
pub async fn wait_for_setups(worker: &Worker, spawned: usize, limit: usize) {
    let settled = || {
        let counters = worker.counters();
        counters.ready.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed)
    };
    // Polled: setup is not the part measured, and a 1 ms tick keeps this simple.
    while spawned as u64 >= settled() + limit as u64 && worker.run.phase() < Phase::Done {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Keeps a connection alive (answering pings) until it fails or the worker stops.
async fn hold(mut socket: Socket) -> Result<(), ConnError> {
    let mut out = Vec::with_capacity(16);
    loop {
        let mut pong = false;
        while let Some((opcode, data)) = socket.frames.next()? {
            pong |= matches!(read_message(opcode, data)?, Read::Text(Incoming::Ping));
        }
        if pong {
            send_text(&mut socket.stream, &mut out, b"3", socket.mask).await?;
        }
        socket.frames.fill(&mut socket.stream).await?;
    }
}

// ---------------------------------------------------------------------------------------
// fanout

/// The shape of a fanout run.
#[derive(Debug, Clone, Copy)]
pub struct Fanout {
    pub clients: usize,
    pub rooms: usize,
    pub publishers: usize,
    /// Publishes per second over all publishers; 0: as fast as the window allows.
    pub rate: f64,
    /// Publishes one publisher may have in flight (sent, not yet received back).
    pub window: u32,
    pub payload: usize,
    /// The last `stalled` clients never read after joining (and are not counted).
    pub stalled: usize,
    /// Which server each client connects to.
    pub placement: Placement,
}

impl Fanout {
    /// Client `i` is a member of room `i % rooms`; publisher `p` is client `p`.
    pub fn room_of(&self, client: usize) -> usize {
        client % self.rooms
    }

    /// Members of `room` that read (the stalled ones are not expected to get anything).
    pub fn members(&self, room: usize) -> u64 {
        let all = self.clients / self.rooms + usize::from(room < self.clients % self.rooms);
        let stalled = (self.clients - self.stalled..self.clients)
            .filter(|&client| self.room_of(client) == room)
            .count();
        (all - stalled) as u64
    }

    pub fn is_stalled(&self, client: usize) -> bool {
        client >= self.clients - self.stalled
    }

    /// Whether deliveries to `client` are measured. In the remote-intake variant (publishers
    /// all on one server) those on the publishers' server are checked but not measured: the
    /// run measures what the other servers take from Redis.
    pub fn is_measured(&self, client: usize) -> bool {
        self.placement.publishers_on != Some(self.placement.server_of(client))
    }

    /// How many marks (see [`Run::marks`]) the run needs: one per publisher and server when
    /// there are several servers.
    pub fn marks(&self) -> usize {
        if self.placement.servers > 1 {
            self.publishers * self.placement.servers
        } else {
            0
        }
    }

    /// The mark where the witness of `publisher` on `server` records how far it got.
    fn mark(&self, publisher: usize, server: usize) -> usize {
        publisher * self.placement.servers + server
    }

    /// The witness of `publisher` on `server`: the first member of its room connected there
    /// that reads. Its copies, arriving from Redis, hold the publisher's window on other
    /// servers; `None` on the publisher's own server, or where its room has nobody.
    pub fn witness(&self, publisher: usize, server: usize) -> Option<usize> {
        if self.placement.servers < 2 || server == self.placement.server_of(publisher) {
            return None;
        }
        (self.room_of(publisher)..self.clients)
            .step_by(self.rooms)
            .find(|&client| !self.is_stalled(client) && self.placement.server_of(client) == server)
    }

    /// The publishers `client` is the witness of, as (sender id, mark).
    pub fn witnessed_by(&self, client: usize) -> Vec<(u32, usize)> {
        let server = self.placement.server_of(client);
        (self.room_of(client)..self.publishers)
            .step_by(self.rooms)
            .filter(|&publisher| self.witness(publisher, server) == Some(client))
            .map(|publisher| (publisher as u32, self.mark(publisher, server)))
            .collect()
    }

    /// The marks of `publisher`'s witnesses on the other servers.
    pub fn witness_marks(&self, publisher: usize) -> Vec<usize> {
        (0..self.placement.servers)
            .filter(|&server| self.witness(publisher, server).is_some())
            .map(|server| self.mark(publisher, server))
            .collect()
    }
}

/// What a fanout client's reader and writer tasks share.
#[derive(Default)]
struct Outbox {
    pong_due: Cell<bool>,
    in_flight: Cell<u32>,
    wake: Signal,
}

/// Connects, joins the client's room, then reads (and publishes, for publishers).
pub async fn fanout_client(worker: Rc<Worker>, client: usize, shape: Fanout) {
    if let Err(error) = fanout_run(&worker, client, shape).await {
        if worker.run.phase() < Phase::Done {
            worker.fail(client, error);
        }
    }
}

async fn fanout_run(worker: &Rc<Worker>, client: usize, shape: Fanout) -> Result<(), ConnError> {
    let mut socket = conn::open_socket_within(worker.target(client), client, CONNECT_LIMIT).await?;
    let room = shape.room_of(client);
    let mut room_json = Vec::new();
    room_json.extend_from_slice(b"\"r");
    wire::put_decimal(&mut room_json, room as u64);
    room_json.push(b'"');
    let mut text = Vec::new();
    wire::put_event(&mut text, "join", Some(1), &[&room_json]);
    let mut out = Vec::new();
    send_text(&mut socket.stream, &mut out, &text, socket.mask).await?;
    await_ack(&mut socket, 1, None, &mut out).await?;
    Counters::add(&worker.counters().ready, 1);
    if shape.is_stalled(client) {
        // Holds the connection open and never reads again: whatever the server sends it
        // piles up in the kernel's buffers (kept small), then in the server's queue for it.
        conn::shrink_receive_buffer(&socket.stream, 4096).map_err(ConnError::Io)?;
        wait_phase(&worker.run, Phase::Done).await;
        drop(socket);
        return Ok(());
    }

    let Socket {
        stream,
        mut frames,
        mask,
    } = socket;
    let (mut reader, writer) = stream.into_split();
    let outbox = Rc::new(Outbox::default());
    let publisher = (client < shape.publishers).then_some(client as u32);
    monoio::spawn(fanout_writer(
        worker.clone(),
        outbox.clone(),
        writer,
        mask,
        publisher.map(|id| (id, room_json, shape)),
    ));
    let mut order = SenderOrder {
        unmeasured: !shape.is_measured(client),
        ..SenderOrder::default()
    };
    let witnessing = shape.witnessed_by(client);
    loop {
        // One clock reading per read: the messages of one read arrived together.
        let received_ns = worker.run.now_ns();
        while let Some((opcode, data)) = frames.next()? {
            match read_message(opcode, data)? {
                Read::Text(Incoming::Event(args)) => {
                    let Some(stamp) = order.receive(worker, args, received_ns) else {
                        continue;
                    };
                    if let Some(&(_, mark)) = witnessing
                        .iter()
                        .find(|(sender, _)| *sender == stamp.sender)
                    {
                        worker.run.marks[mark].fetch_max(stamp.seq, Ordering::Release);
                    }
                    if Some(stamp.sender) == publisher {
                        outbox
                            .in_flight
                            .set(outbox.in_flight.get().saturating_sub(1));
                        outbox.wake.raise();
                    }
                }
                Read::Text(Incoming::Ping) => {
                    outbox.pong_due.set(true);
                    outbox.wake.raise();
                }
                _ => {}
            }
        }
        frames.fill(&mut reader).await?;
    }
}

/// Checks each sender's messages arrive in order and intact, and records each delivery.
#[derive(Default)]
pub struct SenderOrder {
    /// Highest sequence number seen per sender (a room has few senders at a time).
    last_seq: Vec<(u32, u64)>,
    /// Deliveries are checked and counted against what was expected, but left out of the
    /// rate and the latency.
    pub unmeasured: bool,
}

impl SenderOrder {
    /// Records one `message` event's arguments; its stamp, unless it was damaged.
    pub fn receive(&mut self, worker: &Worker, args: &[u8], received_ns: u64) -> Option<Stamp> {
        let Some(stamp) =
            payload::message_content(args).and_then(|content| payload::check(content).ok())
        else {
            Counters::add(&worker.counters().corrupt, 1);
            return None;
        };
        match self
            .last_seq
            .iter_mut()
            .find(|(sender, _)| *sender == stamp.sender)
        {
            Some((_, last)) if stamp.seq <= *last => {
                Counters::add(&worker.counters().reordered, 1);
            }
            Some((_, last)) => *last = stamp.seq,
            None => self.last_seq.push((stamp.sender, stamp.seq)),
        }
        if self.unmeasured {
            worker.done_unmeasured();
        } else {
            worker.done_at(stamp.sent_ns, received_ns);
        }
        Some(stamp)
    }
}

/// Reads until the ack with `id` arrives, answering pings; whether its arguments were
/// `["<expected>"]` (always true when nothing is expected).
pub(crate) async fn await_ack(
    socket: &mut Socket,
    id: u64,
    expected: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<bool, ConnError> {
    loop {
        let mut pong = false;
        let mut answer = None;
        while let Some((opcode, data)) = socket.frames.next()? {
            match read_message(opcode, data)? {
                Read::Text(Incoming::Ping) => pong = true,
                Read::Text(Incoming::Ack(ack, args)) if ack == id => {
                    answer = Some(expected.is_none_or(|e| payload::ack_content(args) == Some(e)));
                }
                _ => {}
            }
        }
        if pong {
            send_text(&mut socket.stream, out, b"3", socket.mask).await?;
        }
        if let Some(intact) = answer {
            return Ok(intact);
        }
        socket.frames.fill(&mut socket.stream).await?;
    }
}

/// Reads until the ack with `id` arrives, answering pings; its arguments (the JSON array).
async fn await_ack_args(
    socket: &mut Socket,
    id: u64,
    out: &mut Vec<u8>,
) -> Result<Vec<u8>, ConnError> {
    loop {
        let mut pong = false;
        let mut answer = None;
        while let Some((opcode, data)) = socket.frames.next()? {
            match read_message(opcode, data)? {
                Read::Text(Incoming::Ping) => pong = true,
                Read::Text(Incoming::Ack(ack, args)) if ack == id => answer = Some(args.to_vec()),
                _ => {}
            }
        }
        if pong {
            send_text(&mut socket.stream, out, b"3", socket.mask).await?;
        }
        if let Some(args) = answer {
            return Ok(args);
        }
        socket.frames.fill(&mut socket.stream).await?;
    }
}

/// Sends pongs and, for a publisher, publishes: on schedule (fixed rate) or whenever the
/// window has room. Several frames due at once go out in one write.
///
/// A publish is in flight until the publisher's own copy is back and, with several servers,
/// until its witness on every other server has it too. The own copy alone would let a
/// publisher run ahead of a node that takes broadcasts from Redis more slowly than its own node
/// sends them: the backlog (in Redis's output buffer, the adapter, the node's queues) would
/// grow for the whole run, and the run would measure the backlog rather than the rate.
async fn fanout_writer<W: AsyncWriteRent>(
    worker: Rc<Worker>,
    outbox: Rc<Outbox>,
    mut io: W,
    mask: [u8; 4],
    publisher: Option<(u32, Vec<u8>, Fanout)>,
) {
    let run = &worker.run;
    let mut out = Vec::with_capacity(4096);
    let mut text = Vec::with_capacity(256);
    let mut body = Vec::with_capacity(256);
    let mut seq = 0u64;
    let mut next_due: Option<u64> = None;
    let remote = match &publisher {
        Some((id, _, shape)) => shape.witness_marks(*id as usize),
        None => Vec::new(),
    };
    // Whether a witness on another server is a whole window behind.
    let remote_full = |seq: u64, window: u32| {
        remote.iter().any(|&mark| {
            seq.saturating_sub(run.marks[mark].load(Ordering::Acquire)) >= u64::from(window)
        })
    };
    loop {
        let phase = run.phase();
        if phase == Phase::Done {
            return;
        }
        if outbox.pong_due.replace(false) {
            wire::put_frame(&mut out, wire::OP_TEXT, b"3", mask);
        }
        // When to look again if nothing wakes the writer first.
        let mut wake_at = run.now_ns() + 50_000_000;
        if let Some((id, room_json, shape)) = &publisher {
            let publishing = matches!(phase, Phase::Warmup | Phase::Measure);
            let now = run.now_ns();
            if phase == Phase::Setup {
                wake_at = now + 1_000_000;
            } else if publishing {
                let interval = if shape.rate > 0.0 {
                    (1e9 * shape.publishers as f64 / shape.rate) as u64
                } else {
                    0
                };
                // Publishers start staggered over one interval.
                let mut due = *next_due.get_or_insert_with(|| {
                    now + interval * u64::from(*id) / shape.publishers.max(1) as u64
                });
                while outbox.in_flight.get() < shape.window
                    && !remote_full(seq, shape.window)
                    && (interval == 0 || due <= now)
                {
                    seq += 1;
                    let sent_ns = if interval == 0 { now } else { due };
                    body.clear();
                    payload::put(
                        &mut body,
                        Stamp {
                            sender: *id,
                            seq,
                            sent_ns,
                        },
                        shape.payload,
                    );
                    text.clear();
                    wire::put_event(&mut text, "publish", None, &[room_json, &body]);
                    wire::put_frame(&mut out, wire::OP_TEXT, &text, mask);
                    outbox.in_flight.set(outbox.in_flight.get() + 1);
                    let counters = worker.counters();
                    Counters::add(&counters.sent, 1);
                    Counters::add(
                        &counters.expected,
                        shape.members(shape.room_of(*id as usize)),
                    );
                    due += interval;
                }
                next_due = Some(due);
                if remote_full(seq, shape.window) {
                    // The witness may run on another worker thread, which can't wake this
                    // task: look again soon (the own copies coming back wake it too).
                    wake_at = wake_at.min(now + 1_000_000);
                } else if interval > 0 && outbox.in_flight.get() < shape.window {
                    wake_at = wake_at.min(due);
                }
            }
        }
        if !out.is_empty() {
            let (result, buf) = io.write_all(std::mem::take(&mut out)).await;
            out = buf;
            out.clear();
            if let Err(error) = result {
                if run.phase() < Phase::Done {
                    worker.fail(0, error);
                }
                return;
            }
            continue;
        }
        let deadline = run.at(wake_at);
        if deadline > Instant::now() {
            monoio::select! {
                _ = outbox.wake.wait() => {}
                _ = monoio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// echo

/// Connects, then sends `echo` with an ack and waits for it, over and over (closed loop).
pub async fn echo_client(worker: Rc<Worker>, client: usize, payload_size: usize) {
    if let Err(error) = echo_run(&worker, client, payload_size).await {
        if worker.run.phase() < Phase::Done {
            worker.fail(client, error);
        }
    }
}

async fn echo_run(worker: &Worker, client: usize, payload_size: usize) -> Result<(), ConnError> {
    let mut socket = conn::open_socket_within(worker.target(client), client, CONNECT_LIMIT).await?;
    Counters::add(&worker.counters().ready, 1);
    wait_phase(&worker.run, Phase::Warmup).await;
    let (mut out, mut text, mut body) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = 0u64;
    while worker.run.phase() < Phase::Drain {
        seq += 1;
        let sent_ns = worker.run.now_ns();
        body.clear();
        payload::put(
            &mut body,
            Stamp {
                sender: client as u32,
                seq,
                sent_ns,
            },
            payload_size,
        );
        text.clear();
        wire::put_event(&mut text, "echo", Some(seq), &[&body]);
        send_text(&mut socket.stream, &mut out, &text, socket.mask).await?;
        Counters::add(&worker.counters().sent, 1);
        let expected = &body[1..body.len() - 1];
        let intact = await_ack(&mut socket, seq, Some(expected), &mut out).await?;
        if !intact {
            Counters::add(&worker.counters().corrupt, 1);
        }
        worker.done(sent_ns);
    }
    // Stay connected (answering pings) until every worker is done.
    hold(socket).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(clients: usize, rooms: usize, publishers: usize, on: Option<usize>) -> Fanout {
        Fanout {
            clients,
            rooms,
            publishers,
            rate: 0.0,
            window: 4,
            payload: 100,
            stalled: 0,
            placement: Placement {
                servers: 2,
                publishers_on: on,
                publishers,
            },
        }
    }

    #[test]
    fn each_publisher_has_a_witness_on_the_other_server() {
        // 20 clients in 5 rooms over 2 servers: room 0 is clients 0, 5, 10, 15 on servers
        // 0, 1, 0, 1; publishers 0 and 5 are both in it, one on each server.
        let fanout = shape(20, 5, 10, None);
        assert_eq!(fanout.witness(0, 0), None);
        assert_eq!(fanout.witness(0, 1), Some(5));
        assert_eq!(fanout.witness(5, 0), Some(0));
        assert_eq!(fanout.witnessed_by(5), [(0, fanout.mark(0, 1))]);
        assert_eq!(fanout.witness_marks(0), [fanout.mark(0, 1)]);
        assert_eq!(fanout.marks(), 20);
        assert!((0..20).all(|client| fanout.is_measured(client)));
        // One server: no witnesses, no marks.
        let single = Fanout {
            placement: Placement::single(),
            ..fanout
        };
        assert_eq!(single.marks(), 0);
        assert!(single.witness_marks(0).is_empty());
        assert!(single.witnessed_by(5).is_empty());
    }

    #[test]
    fn remote_intake_measures_only_the_other_server() {
        // Publishers 0..5 on server 0, everyone else on server 1.
        let fanout = shape(20, 5, 5, Some(0));
        assert_eq!(fanout.witness(2, 1), Some(7));
        assert_eq!(fanout.witnessed_by(7), [(2, fanout.mark(2, 1))]);
        assert!((0..5).all(|client| !fanout.is_measured(client)));
        assert!((5..20).all(|client| fanout.is_measured(client)));
    }
}
