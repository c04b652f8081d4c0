//! `loadtest`: a load generator for any Socket.IO server that implements the ringcast bench
//! contract (`join` + ack, `publish(room, payload)` -> `message` to the room, `echo` + ack).
//!
//! The main thread parses the command line, starts the worker threads (each a monoio
//! runtime on io_uring, or epoll with `--epoll`, driving its share of the clients), moves the
//! run through its phases, samples the server (or a cluster's nodes and their Redis) from
//! /proc, and reports.

mod api_emit;
mod churn;
mod conn;
mod payload;
mod polling;
mod procfs;
mod report;
mod run;
mod scenarios;
mod signal;
mod sink;
mod wire;

use std::future::Future;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;

use crate::conn::{Placement, Target};
use crate::procfs::{Probe, ProcessSample, Sample};
use crate::report::{Outcome, ProcessUse};
use crate::run::{Phase, Run};
use crate::scenarios::{Fanout, Worker};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for Socket.IO servers (the ringcast bench contract)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Args, Clone)]
struct Global {
    /// Server address. Several (repeated, or comma-separated: the nodes of a cluster) spread
    /// the clients: client i connects to address i % n (see `fanout --publishers-on`).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:3000",
        value_delimiter = ','
    )]
    addr: Vec<String>,
    /// Engine.IO path.
    #[arg(long, global = true, default_value = "/socket.io/")]
    path: String,
    /// The server's pid: its CPU time and RSS are read from /proc. Several (repeated, or
    /// comma-separated: a cluster's nodes) are summed, and each is reported too.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The pid of the Redis a cluster's nodes share: its CPU time is reported apart and
    /// counted in the total per unit.
    #[arg(long, global = true)]
    redis_pid: Option<u32>,
    /// Cores the server is pinned to (e.g. `0` or `0-1`): their busy time is the cost.
    #[arg(long, global = true)]
    server_cores: Option<String>,
    /// Loadtest worker threads.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Pin the worker threads to these cores (e.g. `1` or `2-3`).
    #[arg(long, global = true)]
    pin: Option<String>,
    /// Spread connections over this many loopback source addresses (127.0.0.1, .2, ...),
    /// to get past one address's ephemeral ports.
    #[arg(long, global = true, default_value_t = 0)]
    source_addrs: u8,
    /// The server's name in the results.
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Append the results as one JSON line to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Write the latency histogram picture (SVG) to this file.
    #[arg(long, global = true)]
    svg: Option<PathBuf>,
    /// Use epoll instead of io_uring.
    #[arg(long, global = true)]
    epoll: bool,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// Offer permessage-deflate (RFC 7692) in every WebSocket upgrade, as browsers do, and
    /// inflate what comes compressed; a server that does not agree fails the connect.
    #[arg(long, global = true)]
    deflate: bool,
    /// Pad payloads with text that compresses as chat or JSON does (about 3:1) instead of a
    /// 36-byte cycle (about 30:1): for runs that measure compression.
    #[arg(long, global = true)]
    text_padding: bool,
    /// The CONNECT's auth payload, a JSON object (`{"token":"..."}` for a server that checks
    /// tokens); none when not given.
    #[arg(long, global = true)]
    auth: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Connect N clients, `concurrency` at a time, and hold them: connects/s, handshake
    /// latency, server CPU per connect and RSS per connection.
    Connect {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// Seconds to hold every connection once all are connected.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
        /// Rooms each client joins after connecting (`k0`, `k1`, ..., shared by all clients),
        /// one `join` with an ack at a time; its connect counts once they are joined.
        #[arg(long, default_value_t = 0)]
        rooms_per_client: usize,
    },
    /// N clients in R rooms; P of them publish to their own room: deliveries/s, latency,
    /// loss and order, server CPU per delivery. Over several `--addr`s (a cluster), client i
    /// connects to address i % n.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Publishes per second over all publishers (0: as fast as the window allows).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Publishes one publisher may have in flight (not yet received back).
        #[arg(long, default_value_t = 16)]
        window: u32,
        /// The last N clients join their room and then never read (slow consumers): the
        /// others must still get every message; these are not counted.
        #[arg(long, default_value_t = 0)]
        stalled: usize,
        /// Remote intake (needs several `--addr`s): every publisher connects to address K and
        /// every other client to the other addresses; only deliveries there are measured (what
        /// those nodes take from Redis). Their own copies, back on K, are checked too.
        #[arg(long, value_name = "K")]
        publishers_on: Option<usize>,
        #[command(flatten)]
        timing: Timing,
    },
    /// Churn soak: `stable` clients stay in their rooms and check every message while all the
    /// others connect, join, publish, see their message back and leave (cleanly or abruptly),
    /// over and over; with `--stats-url`, checks afterwards that the server holds nothing.
    Churn {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        stable: usize,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Messages a churning client publishes per visit.
        #[arg(long, default_value_t = 2)]
        publishes: usize,
        /// The server's stats endpoint (`ringcast --stats-path`), e.g.
        /// http://127.0.0.1:3000/stats: after the run it must report no sessions, sockets,
        /// rooms or timers.
        #[arg(long)]
        stats_url: Option<String>,
        #[command(flatten)]
        timing: Timing,
    },
    /// N clients each sending `echo` with an ack and waiting for it (closed loop).
    Echo {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[command(flatten)]
        timing: Timing,
    },
    /// N members join one room over WebSocket; one keep-alive HTTP/1.1 connection posts
    /// `/v1/emit` to it (or `/v1/batch` with `--batch K` emits per request) on the server's
    /// HTTP API: emits/s, latency from the request's write to the last member's receipt,
    /// server CPU per emit.
    ApiEmit {
        /// Members of the room.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// The API listener (`[api] listen`), host:port.
        #[arg(long)]
        api_addr: String,
        /// An API key with the `emit` scope, sent as `Authorization: Bearer KEY`.
        #[arg(long)]
        api_key: String,
        /// Requests per second (0: each as soon as the previous one is answered).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Emit ops per request: more than 1 posts `/v1/batch`.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Requests written and not yet answered, at most (HTTP/1.1 pipelining on the one
        /// connection; 1: each request waits for the previous answer).
        #[arg(long, default_value_t = 16)]
        window: u32,
        #[command(flatten)]
        timing: Timing,
    },
    /// The echo scenario over HTTP long-polling.
    Polling {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[command(flatten)]
        timing: Timing,
    },
    /// Sets the runs recorded in JSON-lines files side by side.
    Table { files: Vec<PathBuf> },
    /// A minimal hook backend on 127.0.0.1 (for the hook benchmarks): forwarded calls get
    /// their own arguments back as the ack, everything else a 204; counts what it saw.
    Sink {
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Seconds to serve before printing the counts and exiting.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
    },
}

#[derive(Args, Clone, Copy)]
struct Timing {
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Clients setting up (connecting and joining) at a time; all at once if not given.
    /// Tens of thousands of simultaneous connects overflow the server's listen backlog.
    #[arg(long)]
    concurrency: Option<usize>,
}

impl Timing {
    /// How the main thread drives a load scenario with these timings.
    fn plan(&self) -> Plan {
        Plan::Load {
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            setup_concurrency: self.concurrency,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Table { files } = &cli.command {
        return print_table(files);
    }
    if let Command::Sink { port, duration } = &cli.command {
        return match sink::run(*port, Duration::from_secs_f64(*duration)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("loadtest sink: {error}");
                ExitCode::from(2)
            }
        };
    }
    match run_scenario(&cli.global, &cli.command) {
        Ok(outcome) => {
            report::print_summary(&outcome);
            if let Some(path) = &cli.global.json {
                if let Err(error) = report::append_json(path, &outcome) {
                    eprintln!("could not write {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("loadtest: {error}");
            ExitCode::from(2)
        }
    }
}

fn print_table(files: &[PathBuf]) -> ExitCode {
    let mut lines = String::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => lines.push_str(&text),
            Err(error) => {
                eprintln!("could not read {}: {error}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    match report::table(&lines) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadtest table: {error}");
            ExitCode::from(2)
        }
    }
}

/// Parses `1`, `0-3` or `0,2,5`.
fn parse_cores(list: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad core list {list:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                cores.extend(a..=b);
            }
            None => cores.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cores)
}

/// What the workers of one scenario run, per worker.
type ClientTask = Arc<dyn Fn(Rc<Worker>, usize) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// How the main thread drives a scenario.
enum Plan {
    Connect {
        concurrency: usize,
        hold: Duration,
        /// Rooms each client joins once connected.
        rooms: usize,
    },
    Load {
        warmup: Duration,
        duration: Duration,
        setup_concurrency: Option<usize>,
    },
}

/// How the worker threads start their clients.
#[derive(Clone, Copy)]
enum Start {
    /// Connect, at most this many at a time, join this many rooms, and hold (the `connect`
    /// scenario).
    ConnectAndHold(usize, usize),
    /// Run the scenario's client task for every client, with at most this many still
    /// setting up at a time (all at once if `None`).
    Run(Option<usize>),
}

/// Greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn run_scenario(global: &Global, command: &Command) -> Result<Outcome, String> {
    if global.text_padding {
        // Payloads up to 8 KiB get text (8 MiB of it in all); longer ones keep the cycle.
        payload::use_text_padding(8 << 10);
    }
    let sources: Vec<IpAddr> = (0..global.source_addrs)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i.saturating_add(1))))
        .collect();
    let mut connect = b"40".to_vec();
    if let Some(auth) = &global.auth {
        let parsed: serde_json::Value =
            serde_json::from_str(auth).map_err(|e| format!("--auth is not JSON: {e}"))?;
        if !parsed.is_object() {
            return Err("--auth must be a JSON object".into());
        }
        connect.extend_from_slice(parsed.to_string().as_bytes());
    }
    let mut targets = Vec::new();
    for host in &global.addr {
        let addr: SocketAddr = host
            .to_socket_addrs()
            .map_err(|e| format!("bad --addr {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--addr {host} resolves to nothing"))?;
        targets.push(Target {
            addr,
            host: host.clone(),
            path: global.path.clone(),
            sources: sources.clone(),
            connect: connect.clone(),
            deflate: global.deflate,
        });
    }
    if targets.is_empty() {
        return Err("no --addr".into());
    }
    let servers = targets.len();
    let targets: Arc<[Target]> = targets.into();
    let mut placement = Placement {
        servers,
        ..Placement::single()
    };
    let threads = global.threads.max(1);
    let pins = match &global.pin {
        Some(list) => parse_cores(list)?,
        None => Vec::new(),
    };
    let probe = Probe {
        server_pids: global.server_pid.clone(),
        redis_pid: global.redis_pid,
        server_cores: match &global.server_cores {
            Some(list) => parse_cores(list)?,
            None => Vec::new(),
        },
    };
    raise_fd_limit();

    // Marks clients pass between workers (fanout over several servers: its witnesses).
    let mut marks = 0;
    let (scenario, clients, unit, mut params, plan, task): (_, _, _, _, _, ClientTask) =
        match *command {
            Command::Connect {
                clients,
                concurrency,
                hold,
                rooms_per_client,
            } => (
                "connect",
                clients,
                "connect",
                {
                    let mut params = serde_json::json!({"clients": clients,
                        "concurrency": concurrency, "hold_s": hold});
                    // Only when given, so that the keys of plain connect runs stay as they were.
                    if rooms_per_client > 0 {
                        params["rooms_per_client"] = rooms_per_client.into();
                    }
                    params
                },
                Plan::Connect {
                    concurrency,
                    hold: Duration::from_secs_f64(hold),
                    rooms: rooms_per_client,
                },
                // Connect runs its own per-worker loop (see `spawn_workers`).
                Arc::new(|_, _| Box::pin(async {})),
            ),
            Command::Fanout {
                clients,
                rooms,
                publishers,
                rate,
                window,
                stalled,
                publishers_on,
                timing,
            } => {
                if rooms == 0
                    || rooms > clients
                    || publishers == 0
                    || publishers + stalled > clients
                {
                    return Err("fanout needs 1 <= rooms <= clients and 1 <= publishers <= \
                     publishers + stalled <= clients"
                        .into());
                }
                if let Some(home) = publishers_on {
                    if servers < 2 || home >= servers || publishers + stalled >= clients {
                        return Err(format!(
                            "--publishers-on K needs several --addr, K < {servers}, and clients \
                         other than the publishers and the stalled ones"
                        ));
                    }
                } else if gcd(rooms, servers) != 1 {
                    eprintln!(
                        "warning: {rooms} rooms over {servers} servers: client i joins room i % \
                     {rooms} and connects to server i % {servers}, so each room's members \
                     are all on one server (take a room count prime to the server count)"
                    );
                }
                placement = Placement {
                    servers,
                    publishers_on,
                    publishers,
                };
                let shape = Fanout {
                    clients,
                    rooms,
                    publishers,
                    rate,
                    window: window.max(1),
                    payload: timing.payload,
                    stalled,
                    placement,
                };
                marks = shape.marks();
                (
                    "fanout",
                    clients,
                    "delivery",
                    serde_json::json!({"clients": clients, "rooms": rooms, "publishers": publishers,
                    "stalled": stalled,
                    "rate": rate, "window": window, "payload": timing.payload,
                    "duration_s": timing.duration, "warmup_s": timing.warmup}),
                    timing.plan(),
                    Arc::new(move |worker, client| {
                        Box::pin(scenarios::fanout_client(worker, client, shape))
                    }),
                )
            }
            Command::Churn {
                clients,
                stable,
                rooms,
                publishes,
                stats_url: _,
                timing,
            } => {
                if stable == 0 || stable >= clients || rooms == 0 || rooms > stable {
                    return Err("churn needs 1 <= rooms <= stable < clients".into());
                }
                let shape = churn::Churn {
                    stable,
                    rooms,
                    publishes: publishes.max(1),
                    payload: timing.payload,
                };
                (
                    "churn",
                    clients,
                    "delivery",
                    serde_json::json!({"clients": clients, "stable": stable, "rooms": rooms,
                    "publishes": publishes, "payload": timing.payload,
                    "duration_s": timing.duration, "warmup_s": timing.warmup}),
                    timing.plan(),
                    Arc::new(move |worker, client| {
                        Box::pin(churn::churn_client(worker, client, shape))
                    }),
                )
            }
            Command::Echo { clients, timing } | Command::Polling { clients, timing } => {
                let polling = matches!(command, Command::Polling { .. });
                let size = timing.payload;
                let task: ClientTask = if polling {
                    Arc::new(move |worker, client| {
                        Box::pin(polling::polling_client(worker, client, size))
                    })
                } else {
                    Arc::new(move |worker, client| {
                        Box::pin(scenarios::echo_client(worker, client, size))
                    })
                };
                (
                    if polling { "polling" } else { "echo" },
                    clients,
                    "ack",
                    serde_json::json!({"clients": clients, "payload": size,
                    "duration_s": timing.duration, "warmup_s": timing.warmup}),
                    timing.plan(),
                    task,
                )
            }
            Command::ApiEmit {
                clients,
                ref api_addr,
                ref api_key,
                rate,
                batch,
                window,
                timing,
            } => {
                if clients == 0 || batch == 0 || batch > 1000 || rate < 0.0 {
                    return Err("api-emit needs clients >= 1, 1 <= batch <= 1000, rate >= 0".into());
                }
                let shape = api_emit::ApiEmit {
                    members: clients,
                    rate,
                    batch,
                    payload: timing.payload,
                    api_addr: api_addr.clone(),
                    api_key: api_key.clone(),
                    window,
                };
                let tally = Arc::new(api_emit::Tally::default());
                (
                    "api-emit",
                    // The emitter is one more task (client `clients`).
                    clients + 1,
                    "emit",
                    serde_json::json!({"clients": clients, "rate": rate, "batch": batch,
                    "window": window, "payload": timing.payload,
                    "duration_s": timing.duration, "warmup_s": timing.warmup}),
                    timing.plan(),
                    Arc::new(move |worker, client| {
                        let (shape, tally) = (Rc::new(shape.clone()), tally.clone());
                        Box::pin(api_emit::api_emit_client(worker, client, shape, tally))
                    }),
                )
            }
            Command::Table { .. } | Command::Sink { .. } => unreachable!("handled in main"),
        };
    if servers > 1 {
        // Only then, so that single-server results (and their keys) stay as they were.
        params["servers"] = servers.into();
        if let Some(home) = placement.publishers_on {
            params["publishers_on"] = home.into();
        }
    }
    let mut key = scenario_key(scenario, &params);
    // Runs with other payloads or compression are other rows.
    if global.text_padding {
        key.push_str(", text");
    }
    if global.deflate {
        key.push_str(", deflate");
    }

    let run = Arc::new(Run::new(threads, marks));
    let progress = Progress::new(!global.quiet && std::io::stderr().is_terminal(), &key);
    let baseline = probe.sample();
    let started = Instant::now();
    let start = match plan {
        Plan::Connect {
            concurrency, rooms, ..
        } => {
            // Every connect is measured, from the first to the last.
            run.set_phase(Phase::Measure);
            Start::ConnectAndHold(concurrency, rooms)
        }
        Plan::Load {
            setup_concurrency, ..
        } => Start::Run(setup_concurrency),
    };
    let handles = spawn_workers(
        &run,
        &targets,
        placement,
        clients,
        threads,
        &pins,
        global.epoll,
        start,
        task,
    )?;

    // Setup: every client connects (and joins), or fails.
    let setup_limit = Duration::from_secs(60) + Duration::from_millis(clients as u64 * 2);
    loop {
        let settled = run.total(|c| &c.ready) + run.total(|c| &c.errors);
        progress.show(
            &format!("connecting {settled}/{clients}"),
            settled,
            clients as u64,
        );
        if settled >= clients as u64 || started.elapsed() > setup_limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_setup = probe.sample();

    let (window, first, last, held): (_, Sample, Sample, _) = match plan {
        Plan::Connect { hold, .. } => {
            run.set_phase(Phase::Drain);
            let hold_start = Instant::now();
            while hold_start.elapsed() < hold {
                progress.show(
                    "holding",
                    hold_start.elapsed().as_millis() as u64,
                    hold.as_millis() as u64,
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            (
                run.window(),
                baseline.clone(),
                after_setup,
                Some(probe.sample()),
            )
        }
        Plan::Load {
            warmup, duration, ..
        } => {
            run.set_phase(Phase::Warmup);
            let phase_start = Instant::now();
            while phase_start.elapsed() < warmup {
                progress.show("warming up", 0, 1);
                std::thread::sleep(Duration::from_millis(50));
            }
            let first = probe.sample();
            run.set_phase(Phase::Measure);
            let measure_start = Instant::now();
            while measure_start.elapsed() < duration {
                let done = run.total(|c| &c.measured);
                let rate = done as f64 / measure_start.elapsed().as_secs_f64().max(1e-3);
                progress.show(
                    &format!("{} {unit}/s", report::format_rate(rate)),
                    measure_start.elapsed().as_millis() as u64,
                    duration.as_millis() as u64,
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let last = probe.sample();
            run.set_phase(Phase::Drain);
            // In-flight work gets a few seconds to arrive; what doesn't is lost. Churning
            // clients finish the visit they are in first (they may publish until then).
            let drain_start = Instant::now();
            let drain_limit = Duration::from_secs(if scenario == "churn" { 60 } else { 5 });
            while drain_start.elapsed() < drain_limit {
                let target_count = if matches!(scenario, "fanout" | "churn" | "api-emit") {
                    run.total(|c| &c.expected)
                } else {
                    run.total(|c| &c.sent)
                };
                if run.total(|c| &c.churning) == 0 && run.total(|c| &c.done) >= target_count {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (run.window(), first, last, None)
        }
    };
    run.set_phase(Phase::Done);
    progress.clear();

    let mut histogram = run::new_histogram();
    for handle in handles {
        match handle.join() {
            Ok(Ok(worker_histogram)) => {
                let _ = histogram.add(&worker_histogram);
            }
            Ok(Err(error)) => return Err(format!("worker failed to start: {error}")),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }

    let ready = run.total(|c| &c.ready);
    let count = match plan {
        Plan::Connect { .. } => ready,
        Plan::Load { .. } => run.total(|c| &c.measured),
    };
    let per_unit = |later: Option<u64>, earlier: Option<u64>| match (later, earlier) {
        (Some(later), Some(earlier)) if count > 0 => {
            Some(later.saturating_sub(earlier) as f64 / count as f64)
        }
        _ => None,
    };
    let window_ns = window.as_nanos().max(1) as f64;
    let self_cpu = last.self_cpu_ns.saturating_sub(first.self_cpu_ns) as f64;
    let loadtest_cpu = self_cpu / (window_ns * threads as f64);
    let expected = run.total(|c| &c.expected);
    let delivered = if matches!(scenario, "fanout" | "churn" | "api-emit") {
        run.total(|c| &c.done)
    } else {
        0
    };
    let (rss_per_conn, slab_per_conn) = match (&held, ready) {
        (Some(held), ready) if ready > 0 => (
            per_conn(held.server_rss, baseline.server_rss, ready),
            per_conn(held.slab, baseline.slab, ready),
        ),
        _ => (None, None),
    };
    let mut outcome = Outcome {
        label: global.label.clone(),
        scenario: scenario.to_owned(),
        key,
        params,
        unit: unit.to_owned(),
        clients: clients as u64,
        ready,
        count,
        window_s: window.as_secs_f64(),
        rate: count as f64 / window.as_secs_f64().max(1e-9),
        latency_us: report::Latency::of(&histogram),
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        reordered: run.total(|c| &c.reordered),
        corrupt: run.total(|c| &c.corrupt),
        errors: run.total(|c| &c.errors),
        wire_bytes_per_unit: match (scenario, run.total(|c| &c.done)) {
            ("connect", _) | (_, 0) => None,
            (_, done) => Some(conn::WIRE_BYTES_READ.load(Ordering::Relaxed) as f64 / done as f64),
        },
        server_cpu_ns_per_unit: per_unit(last.server_cpu_ns, first.server_cpu_ns),
        processes: Vec::new(),
        total_cpu_ns_per_unit: None,
        server_core_ns_per_unit: per_unit(last.cores_busy_ns, first.cores_busy_ns),
        server_cpu_cores: match (last.server_cpu_ns, first.server_cpu_ns) {
            (Some(b), Some(a)) => Some(b.saturating_sub(a) as f64 / window_ns),
            _ => None,
        },
        server_rss_bytes: held.as_ref().unwrap_or(&last).server_rss,
        server_rss_per_conn: rss_per_conn,
        slab_per_conn,
        loadtest_cpu,
        loadtest_saturated: loadtest_cpu >= 0.9,
        server_rss_baseline_bytes: baseline.server_rss,
        leftover: None,
        ok: false,
        failure: None,
    };
    // Several processes (a cluster's nodes, their Redis): each one, and all together.
    if probe.server_pids.len() > 1 || probe.redis_pid.is_some() {
        let cpu_of = |process: &ProcessSample, before: &ProcessSample| {
            Some(process.cpu_ns?.saturating_sub(before.cpu_ns?))
        };
        // CPU over the window as for the single figure; RSS once the connections are held
        // (connect) or at the window's end.
        let rss_at = held.as_ref().unwrap_or(&last);
        let mut each: Vec<(&str, u32, Option<u64>, Option<u64>)> = probe
            .server_pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let at = |sample: &Sample| sample.servers.get(i).copied().unwrap_or_default();
                let used = cpu_of(&at(&last), &at(&first));
                ("server", pid, used, at(rss_at).rss)
            })
            .collect();
        if let Some(pid) = probe.redis_pid {
            let at = |sample: &Sample| sample.redis.unwrap_or_default();
            let used = cpu_of(&at(&last), &at(&first));
            each.push(("redis", pid, used, at(rss_at).rss));
        }
        let mut total = Some(0u64);
        for (role, pid, used, rss) in each {
            total = total.zip(used).map(|(sum, used)| sum + used);
            outcome.processes.push(ProcessUse {
                role: role.to_owned(),
                pid,
                cpu_ns_per_unit: used
                    .filter(|_| count > 0)
                    .map(|ns| ns as f64 / count as f64),
                cpu_cores: used.map(|ns| ns as f64 / window_ns),
                rss_bytes: rss,
            });
        }
        outcome.total_cpu_ns_per_unit = total
            .filter(|_| count > 0)
            .map(|ns| ns as f64 / count as f64);
    }
    // Churn: the server must have let go of everything once every client is gone.
    let mut not_settled = None;
    if let Command::Churn {
        stats_url: Some(url),
        ..
    } = command
    {
        let (totals, settled) = churn::check_settled(url, Duration::from_secs(15))?;
        outcome.server_rss_bytes = probe.sample().server_rss;
        if !settled {
            not_settled = Some(format!("the server still holds {totals} after the run"));
        }
        outcome.leftover = Some(totals);
    }
    let failure = if outcome.ready < outcome.clients {
        Some(format!(
            "{} of {} clients never got ready",
            outcome.clients - outcome.ready,
            outcome.clients
        ))
    } else if outcome.errors > 0 {
        Some(format!("{} client errors", outcome.errors))
    } else if outcome.lost + outcome.reordered + outcome.corrupt > 0 {
        Some("messages lost, reordered or corrupt".to_owned())
    } else if outcome.count == 0 {
        Some("no work was done in the measured window".to_owned())
    } else {
        not_settled
    };
    outcome.failure = match (failure, run.first_error()) {
        (Some(failure), Some(first)) => Some(format!("{failure}; first: {first}")),
        (failure, _) => failure,
    };
    outcome.ok = outcome.failure.is_none();
    if let Some(path) = &global.svg {
        let title = format!("{} — {}", outcome.key, outcome.label);
        if let Err(error) = report::write_svg(path, &title, &histogram) {
            eprintln!("could not write {}: {error}", path.display());
        }
    }
    Ok(outcome)
}

fn per_conn(after: Option<u64>, before: Option<u64>, connections: u64) -> Option<f64> {
    Some((after? as f64 - before? as f64) / connections as f64)
}

/// A stable, readable name for a scenario and its parameters (runs with equal keys compare).
fn scenario_key(scenario: &str, params: &serde_json::Value) -> String {
    let key = single_server_key(scenario, params);
    match params.get("servers").and_then(|n| n.as_u64()) {
        Some(servers) if servers > 1 => {
            let intake = match params.get("publishers_on").and_then(|k| k.as_u64()) {
                Some(home) => format!(", publishers on server {home} (remote intake)"),
                None => String::new(),
            };
            format!("{key}, over {servers} servers{intake}")
        }
        _ => key,
    }
}

/// [`scenario_key`] without the servers: the key of a single-server run.
fn single_server_key(scenario: &str, params: &serde_json::Value) -> String {
    let get = |name: &str| params.get(name).map(|v| v.to_string()).unwrap_or_default();
    match scenario {
        "connect" => {
            let rooms = match params.get("rooms_per_client").and_then(|r| r.as_u64()) {
                Some(k) if k > 0 => format!(", {k} rooms each"),
                _ => String::new(),
            };
            format!(
                "connect {} clients, {} at a time{rooms}",
                get("clients"),
                get("concurrency")
            )
        }
        "churn" => format!(
            "churn {} clients ({} stable) in {} rooms, {} publishes per visit, {} B",
            get("clients"),
            get("stable"),
            get("rooms"),
            get("publishes"),
            get("payload")
        ),
        "fanout" => {
            let rate = params.get("rate").and_then(|r| r.as_f64()).unwrap_or(0.0);
            let pace = if rate > 0.0 {
                format!("{rate} publishes/s")
            } else {
                format!("max rate, window {}", get("window"))
            };
            let stalled = match params.get("stalled").and_then(|s| s.as_u64()) {
                Some(n) if n > 0 => format!(", {n} stalled"),
                _ => String::new(),
            };
            format!(
                "fanout {} clients in {} rooms, {} publishers{stalled}, {pace}, {} B",
                get("clients"),
                get("rooms"),
                get("publishers"),
                get("payload")
            )
        }
        "api-emit" => {
            let rate = params.get("rate").and_then(|r| r.as_f64()).unwrap_or(0.0);
            let pace = if rate > 0.0 {
                format!("{rate} requests/s")
            } else {
                "max rate".to_owned()
            };
            format!(
                "api-emit to 1 room of {} clients, {} emits per request, {pace}, {} B",
                get("clients"),
                get("batch"),
                get("payload")
            )
        }
        other => format!("{other} {} clients, {} B", get("clients"), get("payload")),
    }
}

/// Starts the worker threads; each drives clients `i` with `i % threads == worker`.
#[allow(clippy::too_many_arguments)]
fn spawn_workers(
    run: &Arc<Run>,
    targets: &Arc<[Target]>,
    placement: Placement,
    clients: usize,
    threads: usize,
    pins: &[usize],
    epoll: bool,
    start: Start,
    task: ClientTask,
) -> Result<Vec<std::thread::JoinHandle<std::io::Result<Histogram<u64>>>>, String> {
    let mut handles = Vec::new();
    for index in 0..threads {
        let (run, targets, task) = (run.clone(), targets.clone(), task.clone());
        let pin = (!pins.is_empty()).then(|| pins[index % pins.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || {
                if let Some(core) = pin {
                    core_affinity::set_for_current(core_affinity::CoreId { id: core });
                }
                let worker = Rc::new(Worker {
                    index,
                    run,
                    targets,
                    placement,
                    clients: (index..clients).step_by(threads).collect(),
                    histogram: std::cell::RefCell::new(run::new_histogram()),
                });
                let main = {
                    let worker = worker.clone();
                    async move {
                        match start {
                            Start::ConnectAndHold(concurrency, rooms) => {
                                let share = concurrency.div_ceil(threads);
                                scenarios::connect(worker.clone(), share, rooms).await
                            }
                            Start::Run(setup_concurrency) => {
                                let share = setup_concurrency.map(|c| c.div_ceil(threads).max(1));
                                for (spawned, &client) in worker.clients.iter().enumerate() {
                                    if let Some(share) = share {
                                        scenarios::wait_for_setups(&worker, spawned, share).await;
                                    }
                                    monoio::spawn(task(worker.clone(), client));
                                }
                                scenarios::wait_phase(&worker.run, Phase::Done).await;
                                // Clients that end by themselves (churn's) close their sockets
                                // before the runtime goes: tasks still pending then are not
                                // dropped, and their connections would stay open.
                                let active = &worker.counters().active;
                                let deadline = Instant::now() + Duration::from_secs(10);
                                while active.load(Ordering::Relaxed) > 0
                                    && Instant::now() < deadline
                                {
                                    monoio::time::sleep(Duration::from_millis(5)).await;
                                }
                            }
                        }
                    }
                };
                if epoll {
                    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                        .enable_timer()
                        .build()?
                        .block_on(main);
                } else {
                    let cooperative = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                        .uring_builder(cooperative_uring())
                        .enable_timer()
                        .build();
                    match cooperative {
                        Ok(mut runtime) => runtime.block_on(main),
                        // Kernels before 6.0 lack these flags: take the defaults.
                        Err(_) => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                            .enable_timer()
                            .build()?
                            .block_on(main),
                    }
                }
                Ok(worker.histogram.replace(run::new_histogram()))
            })
            .map_err(|e| format!("could not start a worker thread: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// io_uring settings for a worker's ring: only its thread submits, and completions are
/// handed over when the thread next enters the kernel rather than by an interrupt. Without
/// this, every message the server sends to a busy loadtest thread costs the *server's* core
/// an IPI to kick that thread (on a VM, an expensive exit), which would charge the loadtest's
/// own overhead to whichever server is measured.
fn cooperative_uring() -> io_uring::Builder {
    let mut builder = io_uring::IoUring::builder();
    builder.setup_coop_taskrun().setup_single_issuer();
    builder
}

/// Raises the open-files limit to its hard limit: every client is a file descriptor.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A one-line progress bar on stderr (when it is a terminal).
struct Progress {
    enabled: bool,
    title: String,
}

impl Progress {
    fn new(enabled: bool, title: &str) -> Self {
        Progress {
            enabled,
            title: title.to_owned(),
        }
    }

    fn show(&self, status: &str, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        const WIDTH: usize = 30;
        let filled = if total == 0 {
            0
        } else {
            ((done.min(total) as f64 / total as f64) * WIDTH as f64) as usize
        };
        eprint!(
            "\r\x1b[2K[{}{}] {status} — {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.title
        );
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_run_has_a_key_of_its_own() {
        let mut params = serde_json::json!({"clients": 100, "rooms": 5, "publishers": 10,
            "stalled": 0, "rate": 0.0, "window": 16, "payload": 100});
        let single = scenario_key("fanout", &params);
        assert_eq!(
            single,
            "fanout 100 clients in 5 rooms, 10 publishers, max rate, window 16, 100 B"
        );
        params["servers"] = 2.into();
        assert_eq!(
            scenario_key("fanout", &params),
            format!("{single}, over 2 servers")
        );
        params["publishers_on"] = 0.into();
        assert!(scenario_key("fanout", &params).ends_with("publishers on server 0 (remote intake)"));
    }

    #[test]
    fn api_emit_and_rooms_per_client_parse_with_their_defaults() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "api-emit",
            "--api-addr",
            "127.0.0.1:3100",
            "--api-key",
            "k",
            "--batch",
            "100",
        ])
        .unwrap();
        let Command::ApiEmit {
            clients,
            rate,
            batch,
            window,
            ref api_addr,
            ..
        } = cli.command
        else {
            panic!("not api-emit");
        };
        assert_eq!((clients, rate, batch, window), (1000, 1000.0, 100, 16));
        assert_eq!(api_addr, "127.0.0.1:3100");
        // The API's address and key are required.
        assert!(Cli::try_parse_from(["loadtest", "api-emit", "--api-key", "k"]).is_err());
        let cli = Cli::try_parse_from(["loadtest", "connect", "--rooms-per-client", "10"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Connect {
                rooms_per_client: 10,
                ..
            }
        ));
        let params = serde_json::json!({"clients": 10, "concurrency": 2, "rooms_per_client": 10});
        assert_eq!(
            scenario_key("connect", &params),
            "connect 10 clients, 2 at a time, 10 rooms each"
        );
        let params =
            serde_json::json!({"clients": 1000, "rate": 0.0, "batch": 100, "payload": 100});
        assert_eq!(
            scenario_key("api-emit", &params),
            "api-emit to 1 room of 1000 clients, 100 emits per request, max rate, 100 B"
        );
    }

    #[test]
    fn addresses_and_pids_take_lists_or_repeats() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "--addr",
            "127.0.0.1:1,127.0.0.1:2",
            "--addr",
            "127.0.0.1:3",
            "--server-pid",
            "10,11",
            "--redis-pid",
            "12",
            "echo",
        ])
        .unwrap();
        assert_eq!(cli.global.addr.len(), 3);
        assert_eq!(cli.global.server_pid, [10, 11]);
        assert_eq!(cli.global.redis_pid, Some(12));
        let default = Cli::try_parse_from(["loadtest", "echo"]).unwrap();
        assert_eq!(default.global.addr, ["127.0.0.1:3000"]);
        assert!(default.global.server_pid.is_empty());
        assert_eq!(gcd(5, 2), 1);
        assert_eq!(gcd(10, 2), 2);
    }
}
