//! What a run produced, and the three ways it is shown: a table for people, a JSON line for
//! machines, an SVG latency histogram; plus `table`, which sets several runs side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(Latency {
            p50: us(histogram.value_at_quantile(0.5)),
            p90: us(histogram.value_at_quantile(0.9)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1_000.0,
        })
    }
}

/// One process of several measured (the nodes of a cluster, their Redis).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessUse {
    /// "server" or "redis".
    pub role: String,
    pub pid: u32,
    /// CPU time (user + system, all threads) per unit.
    pub cpu_ns_per_unit: Option<f64>,
    /// CPU use over the window, in cores.
    pub cpu_cores: Option<f64>,
    pub rss_bytes: Option<u64>,
}

impl ProcessUse {
    /// A short name: `server 0`, `server 1`, `redis`.
    pub fn name(&self, index: usize) -> String {
        if self.role == "server" {
            format!("server {index}")
        } else {
            self.role.clone()
        }
    }
}

/// One run's results: one JSON line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The server's name, as given with `--label`.
    pub label: String,
    pub scenario: String,
    /// A short description of the scenario's parameters; runs with equal keys compare.
    pub key: String,
    pub params: serde_json::Value,
    /// What one unit of work is: "delivery", "ack" or "connect".
    pub unit: String,
    pub clients: u64,
    /// Clients that connected (and joined).
    pub ready: u64,
    /// Units of work in the measured window.
    pub count: u64,
    pub window_s: f64,
    /// Units per second over the measured window.
    pub rate: f64,
    /// Latency of the units in the measured window (connect: handshake time).
    pub latency_us: Option<Latency>,
    /// Fanout: deliveries the publishes called for, and those that arrived.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub reordered: u64,
    pub corrupt: u64,
    pub errors: u64,
    /// Bytes the clients read from their connections per unit, over the whole run (setup and
    /// warm-up included, so a little above the steady state): what the server put on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_bytes_per_unit: Option<f64>,
    /// Server process CPU time per unit (user + system, all threads); with several server
    /// processes, theirs together (Redis not included).
    pub server_cpu_ns_per_unit: Option<f64>,
    /// With several server processes or a Redis pid: each one, servers first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessUse>,
    /// With several server processes or a Redis pid: all of them (Redis included) per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cpu_ns_per_unit: Option<f64>,
    /// Busy time of the server's cores per unit (includes softirq work on those cores).
    pub server_core_ns_per_unit: Option<f64>,
    /// Server CPU use over the window, in cores.
    pub server_cpu_cores: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    /// Connect: RSS growth per connection held.
    pub server_rss_per_conn: Option<f64>,
    /// Connect: kernel slab growth per connection (both ends of each loopback connection).
    pub slab_per_conn: Option<f64>,
    /// The loadtest's own CPU use over the window, as a share of its worker threads.
    pub loadtest_cpu: f64,
    /// True when the loadtest itself was the bottleneck (its threads ≥ 90 % busy).
    pub loadtest_saturated: bool,
    /// The server's RSS before the run (churn compares it with the RSS after).
    #[serde(default)]
    pub server_rss_baseline_bytes: Option<u64>,
    /// Churn: the server's totals (stats endpoint) once every client had gone.
    #[serde(default)]
    pub leftover: Option<serde_json::Value>,
    pub ok: bool,
    pub failure: Option<String>,
}

impl Outcome {
    /// The figure runs are compared by: server core time per unit, or else the CPU time of
    /// the measured processes (a cluster's servers and Redis together).
    pub fn cost_ns(&self) -> Option<f64> {
        self.server_core_ns_per_unit
            .or(self.total_cpu_ns_per_unit)
            .or(self.server_cpu_ns_per_unit)
    }
}

/// Prints the human summary of one run.
pub fn print_summary(outcome: &Outcome) {
    let mut text = String::new();
    let status = if outcome.ok { "ok" } else { "FAILED" };
    let _ = writeln!(
        text,
        "\n{} against {} — {status}",
        outcome.key, outcome.label
    );
    let mut row = |name: &str, value: String| {
        let _ = writeln!(text, "  {name:<28} {value}");
    };
    row(
        "clients ready",
        format!("{} of {}", outcome.ready, outcome.clients),
    );
    let units = plural(&outcome.unit);
    row(
        &format!("{units} in window"),
        format!("{} in {:.2} s", outcome.count, outcome.window_s),
    );
    row(&format!("{units} / s"), format_rate(outcome.rate));
    if let Some(latency) = outcome.latency_us {
        row(
            "latency p50 / p90 / p99",
            format!(
                "{} / {} / {}",
                format_us(latency.p50),
                format_us(latency.p90),
                format_us(latency.p99)
            ),
        );
        row(
            "latency p99.9 / max",
            format!("{} / {}", format_us(latency.p999), format_us(latency.max)),
        );
    }
    if outcome.unit == "delivery" {
        row(
            "delivered / expected",
            format!("{} / {}", outcome.delivered, outcome.expected),
        );
    }
    row(
        "lost / reordered / corrupt",
        format!(
            "{} / {} / {}",
            outcome.lost, outcome.reordered, outcome.corrupt
        ),
    );
    row("client errors", outcome.errors.to_string());
    if let Some(bytes) = outcome.wire_bytes_per_unit {
        row(
            &format!("wire bytes / {}", outcome.unit),
            format!("{bytes:.0}"),
        );
    }
    if let Some(ns) = outcome.server_core_ns_per_unit {
        row(
            &format!("server core time / {}", outcome.unit),
            format_ns(ns),
        );
    }
    if let Some(ns) = outcome.server_cpu_ns_per_unit {
        row(&format!("server CPU / {}", outcome.unit), format_ns(ns));
    }
    if let Some(cores) = outcome.server_cpu_cores {
        row(
            "server CPU use",
            format!("{:.0} % of a core", cores * 100.0),
        );
    }
    for (index, process) in outcome.processes.iter().enumerate() {
        let figures = [
            process
                .cpu_ns_per_unit
                .map(|ns| format!("{} / {}", format_ns(ns), outcome.unit)),
            process
                .cpu_cores
                .map(|cores| format!("{:.0} % of a core", cores * 100.0)),
            process
                .rss_bytes
                .map(|rss| format!("RSS {}", format_bytes(rss as f64))),
        ];
        let figures: Vec<String> = figures.into_iter().flatten().collect();
        row(
            &format!("{} (pid {})", process.name(index), process.pid),
            figures.join(", "),
        );
    }
    if let Some(ns) = outcome.total_cpu_ns_per_unit {
        row(
            &format!("total CPU / {}", outcome.unit),
            format!("{} (servers + redis)", format_ns(ns)),
        );
    }
    if let Some(rss) = outcome.server_rss_bytes {
        row("server RSS", format_bytes(rss as f64));
    }
    if let Some(per) = outcome.server_rss_per_conn {
        row("server RSS / connection", format_bytes(per));
    }
    if let Some(per) = outcome.slab_per_conn {
        row("kernel slab / connection", format_bytes(per));
    }
    row(
        "loadtest CPU use",
        format!("{:.0} % of its threads", outcome.loadtest_cpu * 100.0),
    );
    if let Some(leftover) = &outcome.leftover {
        row("server after the run", leftover.to_string());
        if let (Some(before), Some(after)) =
            (outcome.server_rss_baseline_bytes, outcome.server_rss_bytes)
        {
            row(
                "server RSS before / after",
                format!(
                    "{} / {}",
                    format_bytes(before as f64),
                    format_bytes(after as f64)
                ),
            );
        }
    }
    if let Some(failure) = &outcome.failure {
        row("failure", failure.clone());
    }
    print!("{text}");
    if outcome.loadtest_saturated {
        eprintln!(
            "warning: the loadtest was itself busy {:.0} % of the time: it, not the server, may \
             have been the bottleneck (give it more --threads or cores)",
            outcome.loadtest_cpu * 100.0
        );
    }
}

/// Appends the outcome as one JSON line.
pub fn append_json(path: &Path, outcome: &Outcome) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let line = serde_json::to_string(outcome).map_err(std::io::Error::other)?;
    writeln!(file, "{line}")
}

/// Writes the latency histogram as an SVG picture: log-spaced latency buckets as bars, with
/// the p50 / p99 / p99.9 marks.
pub fn write_svg(path: &Path, title: &str, histogram: &Histogram<u64>) -> std::io::Result<()> {
    std::fs::write(path, svg(title, histogram))
}

fn svg(title: &str, histogram: &Histogram<u64>) -> String {
    const WIDTH: f64 = 800.0;
    const HEIGHT: f64 = 400.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 50.0;
    const TOP: f64 = 40.0;
    // The right margin holds the legend.
    let plot_w = WIDTH - LEFT - 150.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    if histogram.is_empty() {
        out.push_str(r#"<text x="300" y="200">no samples</text></svg>"#);
        return out;
    }
    // Buckets: 10 per decade from the smallest to the largest sample.
    let low = (histogram.min().max(1) as f64).log10().floor();
    let high = ((histogram.max().max(1) as f64).log10() + 0.1)
        .ceil()
        .max(low + 1.0);
    let buckets = ((high - low) * 10.0) as usize;
    let mut counts = vec![0u64; buckets];
    for value in histogram.iter_recorded() {
        let v = (value.value_iterated_to().max(1) as f64).log10();
        let index = (((v - low) * 10.0) as usize).min(buckets - 1);
        counts[index] += value.count_since_last_iteration();
    }
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x_of = |log_ns: f64| LEFT + (log_ns - low) / (high - low) * plot_w;
    let bar_w = plot_w / buckets as f64;
    for (i, &count) in counts.iter().enumerate() {
        let h = count as f64 / peak * plot_h;
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4a7fb5"/>"##,
            LEFT + i as f64 * bar_w,
            TOP + plot_h - h,
            (bar_w - 1.0).max(0.5),
            h
        );
    }
    let axis_y = TOP + plot_h;
    let _ = write!(
        out,
        r#"<line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="black"/>"#,
        LEFT + plot_w
    );
    let mut decade = low;
    while decade <= high {
        let x = x_of(decade);
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{axis_y}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            axis_y + 5.0,
            axis_y + 18.0,
            format_us(10f64.powf(decade) / 1_000.0)
        );
        decade += 1.0;
    }
    // Marks as dashed lines, named in a legend at the top right so that close marks stay legible.
    for (row, (name, quantile, color)) in [
        ("p50", 0.5, "#2a9d2a"),
        ("p99", 0.99, "#d08a00"),
        ("p99.9", 0.999, "#c03030"),
    ]
    .into_iter()
    .enumerate()
    {
        let value = histogram.value_at_quantile(quantile).max(1);
        let x = x_of((value as f64).log10());
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{axis_y}" stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/><text x="{}" y="{}" fill="{color}" text-anchor="end">{name} {}</text>"#,
            WIDTH - 20.0,
            TOP + 14.0 * row as f64,
            format_us(value as f64 / 1_000.0)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (log scale), {} samples</text></svg>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        histogram.len()
    );
    out
}

fn plural(unit: &str) -> String {
    match unit.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{unit}s"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn format_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn format_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

pub fn format_rate(rate: f64) -> String {
    if rate >= 1_000_000.0 {
        format!("{:.2} M", rate / 1_000_000.0)
    } else if rate >= 1_000.0 {
        format!("{:.1} k", rate / 1_000.0)
    } else {
        format!("{rate:.0}")
    }
}

pub fn format_bytes(bytes: f64) -> String {
    if bytes.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else if bytes.abs() >= 1024.0 {
        format!("{:.2} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// `loadtest table`: the runs of several servers side by side, one block per scenario, with
/// each server's cost as a multiple of the first label's (ringcast's, when present).
pub fn table(lines: &str) -> Result<String, String> {
    let mut outcomes = Vec::new();
    for (number, line) in lines.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let outcome: Outcome =
            serde_json::from_str(line).map_err(|error| format!("line {}: {error}", number + 1))?;
        outcomes.push(outcome);
    }
    // Labels in order of appearance, ringcast first; for each (key, label) the last run.
    let mut labels: Vec<String> = Vec::new();
    for outcome in &outcomes {
        if !labels.contains(&outcome.label) {
            labels.push(outcome.label.clone());
        }
    }
    if let Some(at) = labels.iter().position(|l| l == "ringcast") {
        let ringcast = labels.remove(at);
        labels.insert(0, ringcast);
    }
    let mut keys: Vec<String> = Vec::new();
    let mut runs: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    for outcome in outcomes {
        if !keys.contains(&outcome.key) {
            keys.push(outcome.key.clone());
        }
        runs.insert((outcome.key.clone(), outcome.label.clone()), outcome);
    }
    let mut out = String::new();
    // Wide enough for every label, with a gap between columns.
    let width = labels
        .iter()
        .map(|l| l.len() + 2)
        .max()
        .unwrap_or(0)
        .max(16);
    for key in &keys {
        let _ = writeln!(out, "\n{key}");
        let _ = write!(out, "  {:<26}", "");
        for label in &labels {
            let _ = write!(out, "{label:>width$}");
        }
        out.push('\n');
        let row_of = |label: &String| runs.get(&(key.clone(), label.clone()));
        let base = labels.first().and_then(row_of);
        type Cell = fn(&Outcome) -> Option<String>;
        let rows: [(&str, Cell); 8] = [
            ("status", |o| {
                Some(if o.ok { "ok" } else { "FAILED" }.to_owned())
            }),
            ("units / s", |o| Some(format_rate(o.rate))),
            ("server time / unit", |o| o.cost_ns().map(format_ns)),
            ("latency p50", |o| o.latency_us.map(|l| format_us(l.p50))),
            ("latency p99", |o| o.latency_us.map(|l| format_us(l.p99))),
            ("latency p99.9", |o| o.latency_us.map(|l| format_us(l.p999))),
            ("RSS / connection", |o| {
                o.server_rss_per_conn.map(format_bytes)
            }),
            ("lost / reordered / errors", |o| {
                Some(format!("{}/{}/{}", o.lost, o.reordered, o.errors))
            }),
        ];
        for (name, cell) in rows {
            let _ = write!(out, "  {name:<26}");
            for label in &labels {
                let value = row_of(label).and_then(cell).unwrap_or_else(|| "-".into());
                let _ = write!(out, "{value:>width$}");
            }
            out.push('\n');
        }
        // Runs over several processes (a cluster): each process's CPU per unit, and all of
        // them together. Blocks of single-server runs show none of these rows.
        let processes = labels
            .iter()
            .filter_map(row_of)
            .map(|o| o.processes.len())
            .max()
            .unwrap_or(0);
        for index in 0..processes {
            let name = labels
                .iter()
                .filter_map(row_of)
                .find_map(|o| o.processes.get(index).map(|p| p.name(index)))
                .unwrap_or_default();
            let _ = write!(out, "  {:<26}", format!("{name} CPU / unit"));
            for label in &labels {
                let value = row_of(label)
                    .and_then(|o| o.processes.get(index))
                    .and_then(|p| p.cpu_ns_per_unit)
                    .map(format_ns)
                    .unwrap_or_else(|| "-".into());
                let _ = write!(out, "{value:>width$}");
            }
            out.push('\n');
        }
        if processes > 0 {
            let _ = write!(out, "  {:<26}", "total CPU / unit");
            for label in &labels {
                let value = row_of(label)
                    .and_then(|o| o.total_cpu_ns_per_unit)
                    .map(format_ns)
                    .unwrap_or_else(|| "-".into());
                let _ = write!(out, "{value:>width$}");
            }
            out.push('\n');
        }
        if let Some(base) = base {
            type Metric = fn(&Outcome) -> Option<f64>;
            let ratios: [(&str, Metric); 3] = [
                ("server time: first ÷ this", |o| o.cost_ns()),
                ("p99: first ÷ this", |o| o.latency_us.map(|l| l.p99)),
                ("RSS/conn: first ÷ this", |o| o.server_rss_per_conn),
            ];
            for (name, metric) in ratios {
                let Some(first) = metric(base) else { continue };
                let _ = write!(out, "  {name:<26}");
                for label in &labels {
                    let value = row_of(label)
                        .and_then(metric)
                        .filter(|&v| v > 0.0)
                        .map(|v| format!("{:.2}×", first / v))
                        .unwrap_or_else(|| "-".into());
                    let _ = write!(out, "{value:>width$}");
                }
                out.push('\n');
            }
        }
        // Against the floor (loadtest/peers/floor), when it ran: what each server costs as a
        // multiple of what the machine itself costs for the same work.
        if let Some(floor) = row_of(&"floor".to_owned()) {
            type Metric = fn(&Outcome) -> Option<f64>;
            let multiples: [(&str, Metric); 2] = [
                ("server time: this ÷ floor", |o| o.cost_ns()),
                ("p99: this ÷ floor", |o| o.latency_us.map(|l| l.p99)),
            ];
            for (name, metric) in multiples {
                let Some(base) = metric(floor).filter(|&v| v > 0.0) else {
                    continue;
                };
                let _ = write!(out, "  {name:<26}");
                for label in &labels {
                    let value = row_of(label)
                        .and_then(metric)
                        .map(|v| format!("{:.2}×", v / base))
                        .unwrap_or_else(|| "-".into());
                    let _ = write!(out, "{value:>width$}");
                }
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: &str, cost: f64, p99: f64) -> Outcome {
        Outcome {
            label: label.into(),
            scenario: "echo".into(),
            key: "echo 100 clients".into(),
            unit: "ack".into(),
            rate: 1000.0,
            server_core_ns_per_unit: Some(cost),
            latency_us: Some(Latency {
                p99,
                ..Latency::default()
            }),
            ok: true,
            ..Outcome::default()
        }
    }

    #[test]
    fn table_sets_servers_side_by_side_with_ratios() {
        let lines: String = [
            outcome("node", 8000.0, 400.0),
            outcome("ringcast", 2000.0, 100.0),
        ]
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
        let table = table(&lines).unwrap();
        let header = table.lines().nth(2).unwrap();
        assert!(header.find("ringcast").unwrap() < header.find("node").unwrap());
        let ratio = table
            .lines()
            .find(|l| l.contains("server time: first"))
            .unwrap();
        assert!(
            ratio.contains("1.00×") && ratio.contains("0.25×"),
            "{ratio}"
        );
        assert!(table.contains("2.00 µs") && table.contains("8.00 µs"));
        assert!(!table.contains("total CPU"));
        assert!(super::table("not json").is_err());
    }

    #[test]
    fn table_gives_each_server_as_a_multiple_of_the_floor() {
        let lines: String = [
            outcome("ringcast", 1100.0, 110.0),
            outcome("node", 8000.0, 400.0),
            outcome("floor", 1000.0, 100.0),
        ]
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
        let table = table(&lines).unwrap();
        let cost = table
            .lines()
            .find(|l| l.contains("time: this ÷ floor"))
            .unwrap();
        assert!(
            cost.contains("1.10×") && cost.contains("8.00×") && cost.contains("1.00×"),
            "{cost}"
        );
        let p99 = table
            .lines()
            .find(|l| l.contains("p99: this ÷ floor"))
            .unwrap();
        assert!(p99.contains("4.00×"), "{p99}");
        // Without the floor, no such rows.
        let without = super::table(
            &lines
                .lines()
                .take(2)
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
        assert!(!without.unwrap().contains("÷ floor"));
    }

    #[test]
    fn table_shows_each_process_of_a_cluster() {
        let process = |role: &str, pid, ns| ProcessUse {
            role: role.into(),
            pid,
            cpu_ns_per_unit: Some(ns),
            ..ProcessUse::default()
        };
        let cluster = |label: &str, scale: f64| Outcome {
            processes: vec![
                process("server", 1, 1000.0 * scale),
                process("server", 2, 2000.0 * scale),
                process("redis", 3, 500.0 * scale),
            ],
            total_cpu_ns_per_unit: Some(3500.0 * scale),
            server_core_ns_per_unit: None,
            ..outcome(label, 0.0, 100.0)
        };
        let lines: String = [cluster("ringcast", 1.0), cluster("node", 4.0)]
            .iter()
            .map(|o| serde_json::to_string(o).unwrap() + "\n")
            .collect();
        let table = table(&lines).unwrap();
        for name in ["server 0 CPU", "server 1 CPU", "redis CPU", "total CPU"] {
            assert!(table.contains(name), "{name} missing from\n{table}");
        }
        // The total (servers and Redis) is what the runs compare by.
        let total = table.lines().find(|l| l.contains("total CPU")).unwrap();
        assert!(
            total.contains("3.50 µs") && total.contains("14.00 µs"),
            "{total}"
        );
        let ratio = table
            .lines()
            .find(|l| l.contains("server time: first"))
            .unwrap();
        assert!(ratio.contains("0.25×"), "{ratio}");
        // A single-server line has neither field.
        let single = serde_json::to_string(&outcome("x", 1.0, 1.0)).unwrap();
        assert!(!single.contains("processes") && !single.contains("total_cpu"));
    }

    #[test]
    fn svg_has_bars_and_marks() {
        let mut histogram = crate::run::new_histogram();
        for i in 1..1000u64 {
            crate::run::record(&mut histogram, i * 10_000);
        }
        let picture = svg("fanout <test>", &histogram);
        assert!(picture.starts_with("<svg") && picture.ends_with("</svg>"));
        assert!(picture.contains("p99.9") && picture.contains("&lt;test&gt;"));
        assert!(picture.matches("<rect").count() > 10);
        assert!(svg("empty", &crate::run::new_histogram()).contains("no samples"));
    }
}
