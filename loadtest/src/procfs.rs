//! Readings from /proc: a process's CPU time and RSS, busy time of given cores, kernel slab
//! memory. Used to charge the server's work (one process, or the nodes of a cluster and their
//! Redis) per delivered message / connect / ack.

use std::fs;

/// Clock ticks per second, for /proc/*/stat and /proc/stat.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

fn ticks_to_ns(ticks: u64) -> u64 {
    ticks * (1_000_000_000 / ticks_per_second())
}

/// User + system CPU time of a whole process (all its threads, live and exited), in ns.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks_to_ns(utime + stime))
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), "VmRSS:").map(|kib| kib * 1024)
}

/// Kernel slab memory, in bytes (socket buffers, inodes: what a connection costs the kernel).
pub fn slab_bytes() -> Option<u64> {
    status_kib("/proc/meminfo", "Slab:").map(|kib| kib * 1024)
}

fn status_kib(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Busy time (everything but idle and iowait, softirq included) of the given cores, in ns.
pub fn cores_busy_ns(cores: &[usize]) -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let mut busy = 0;
    for &core in cores {
        let name = format!("cpu{core}");
        let line = stat
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name.as_str()))?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = values.iter().take(8).sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        busy += total - idle;
    }
    Some(ticks_to_ns(busy))
}

/// CPU time this process has used so far, in ns (precise: from getrusage).
pub fn self_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (micros(usage.ru_utime) + micros(usage.ru_stime)) * 1_000
}

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub cpu_ns: Option<u64>,
    pub rss: Option<u64>,
}

impl ProcessSample {
    fn of(pid: u32) -> Self {
        ProcessSample {
            cpu_ns: process_cpu_ns(pid),
            rss: rss_bytes(pid),
        }
    }
}

/// One reading of everything measured about the server(s) and the loadtest itself.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The server processes together; `None` when none is given or one can't be read (one
    /// that exited would make a sum over the window meaningless).
    pub server_cpu_ns: Option<u64>,
    pub server_rss: Option<u64>,
    /// Each server process, in the order of `Probe::server_pids`.
    pub servers: Vec<ProcessSample>,
    pub redis: Option<ProcessSample>,
    pub cores_busy_ns: Option<u64>,
    pub slab: Option<u64>,
    pub self_cpu_ns: u64,
}

/// What to sample.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// The server's pid, or those of the nodes of a cluster.
    pub server_pids: Vec<u32>,
    /// The pid of the Redis the nodes share: reported apart from the servers.
    pub redis_pid: Option<u32>,
    pub server_cores: Vec<usize>,
}

impl Probe {
    pub fn sample(&self) -> Sample {
        let servers: Vec<ProcessSample> = self
            .server_pids
            .iter()
            .map(|&pid| ProcessSample::of(pid))
            .collect();
        let sum = |field: fn(&ProcessSample) -> Option<u64>| {
            if servers.is_empty() {
                None
            } else {
                servers.iter().map(field).sum()
            }
        };
        Sample {
            server_cpu_ns: sum(|s| s.cpu_ns),
            server_rss: sum(|s| s.rss),
            redis: self.redis_pid.map(ProcessSample::of),
            servers,
            cores_busy_ns: if self.server_cores.is_empty() {
                None
            } else {
                cores_busy_ns(&self.server_cores)
            },
            slab: slab_bytes(),
            self_cpu_ns: self_cpu_ns(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(process_cpu_ns(pid).is_some());
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cores_busy_ns(&[0]).is_some());
        assert!(slab_bytes().is_some());
        let before = self_cpu_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu_ns() >= before);
        assert_eq!(process_cpu_ns(u32::MAX), None);
    }

    #[test]
    fn sums_several_processes_and_none_if_one_is_gone() {
        let pid = std::process::id();
        let probe = Probe {
            server_pids: vec![pid, pid],
            redis_pid: Some(pid),
            server_cores: Vec::new(),
        };
        let sample = probe.sample();
        assert_eq!(sample.servers.len(), 2);
        let one = sample.servers[0].rss.unwrap();
        assert!(sample.server_rss.unwrap() >= one);
        assert!(sample.redis.unwrap().cpu_ns.is_some());
        let gone = Probe {
            server_pids: vec![pid, u32::MAX],
            ..Probe::default()
        };
        assert_eq!(gone.sample().server_cpu_ns, None);
        assert_eq!(Probe::default().sample().server_cpu_ns, None);
    }
}
