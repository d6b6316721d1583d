//! The process's own metrics, named as Prometheus's client libraries name them (`process_*`): CPU
//! seconds, resident memory, open and most file descriptors, threads, start time. Read from
//! Linux's `/proc/self` when `/metrics` is asked; elsewhere they are left out.
//!
//! Owns: reading and writing them. Must not: keep state; every scrape reads afresh.

use std::fmt::Write;

/// Clock ticks per second (`getconf CLK_TCK`): 100 on every Linux this runs on.
const TICKS: f64 = 100.0;
const PAGE: u64 = 4096;

/// What `/proc/self` says now; `None` where it cannot be read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl Process {
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_seconds =
            field(14).zip(field(15)).map(|(user, system)| (user + system) as f64 / TICKS);
        let boot = boot_time();
        Self {
            cpu_seconds,
            resident_bytes: field(24).map(|pages| pages * PAGE),
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64),
            max_fds: max_fds(),
            threads: field(20),
            start_time_seconds: field(22)
                .zip(boot)
                .map(|(ticks, boot)| boot + ticks as f64 / TICKS),
        }
    }

    /// Appends them to a scrape, in the text format.
    pub fn render(&self, out: &mut String) {
        let lines: [(&str, &str, &str, Option<String>); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
                self.cpu_seconds.map(|v| format!("{v:.2}")),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory, in bytes.",
                self.resident_bytes.map(|v| v.to_string()),
            ),
            (
                "process_open_fds",
                "gauge",
                "Open file descriptors.",
                self.open_fds.map(|v| v.to_string()),
            ),
            (
                "process_max_fds",
                "gauge",
                "The most file descriptors the process may open.",
                self.max_fds.map(|v| v.to_string()),
            ),
            (
                "process_threads",
                "gauge",
                "Threads of the process.",
                self.threads.map(|v| v.to_string()),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time since the Unix epoch, in seconds.",
                self.start_time_seconds.map(|v| format!("{v:.2}")),
            ),
        ];
        for (name, kind, help, value) in lines {
            if let Some(value) = value {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
            }
        }
    }
}

/// When the machine booted (`btime` of `/proc/stat`), in seconds since the Unix epoch.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("btime "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft limit on open files (`Max open files` of `/proc/self/limits`).
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_itself() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let process = Process::read();
        assert!(process.resident_bytes.unwrap() > 1 << 20);
        assert!(process.open_fds.unwrap() >= 3 && process.open_fds < process.max_fds);
        assert!(process.threads.unwrap() >= 1);
        let started = process.start_time_seconds.unwrap();
        assert!(started <= now.as_secs_f64() + 1.0 && started > now.as_secs_f64() - 3600.0);
        let mut out = String::new();
        process.render(&mut out);
        assert!(out.contains("\nprocess_open_fds "), "{out}");
        assert!(out.contains("# TYPE process_cpu_seconds_total counter"), "{out}");
    }
}
