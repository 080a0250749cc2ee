//! CPU time and peak memory of a process tree, from the kernel's accounting in `/proc`.
//!
//! CPU time is `utime + stime` of `/proc/PID/stat` (all threads of the process) summed over the
//! process and its descendants, in clock ticks of 10 ms (`USER_HZ` is 100 on Linux). Peak memory
//! is `VmHWM` of `/proc/PID/status` (the resident set's high-water mark since the process
//! started) summed over the tree.

use std::fs;

/// Linux exposes CPU times in `USER_HZ` ticks, which is 100 per second on every architecture
/// that Switchyard targets.
pub const TICK_MS: f64 = 10.0;

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Processes found (the root and its descendants).
    pub processes: usize,
    /// `utime + stime` over the tree, in ms.
    pub cpu_ms: f64,
    /// Sum of `VmHWM` over the tree, in KiB.
    pub peak_rss_kib: u64,
    /// Sum of `VmRSS` over the tree, in KiB.
    pub rss_kib: u64,
}

/// Parses `/proc/PID/stat`: returns (ppid, utime + stime in ticks).
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// Reads a `kB` line such as `VmHWM:  1234 kB` from `/proc/PID/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read_stat(pid: u32) -> Option<(u32, u64)> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The process and all its descendants (found by scanning `/proc` for parent ids).
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = read_stat(pid) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for &(pid, ppid) in &parents {
            if ppid == parent && !out.contains(&pid) {
                out.push(pid);
            }
        }
        i += 1;
    }
    out
}

/// Reads the tree rooted at `root`; `None` when the root process does not exist.
pub fn sample(root: u32) -> Option<Sample> {
    read_stat(root)?;
    let mut s = Sample::default();
    for pid in tree(root) {
        let Some((_, ticks)) = read_stat(pid) else {
            continue;
        };
        s.processes += 1;
        s.cpu_ms += ticks as f64 * TICK_MS;
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            s.peak_rss_kib += parse_status_kib(&status, "VmHWM").unwrap_or(0);
            s.rss_kib += parse_status_kib(&status, "VmRSS").unwrap_or(0);
        }
    }
    Some(s)
}

/// Parses the first line of `/proc/stat`: time all CPUs spent running tasks (user, nice, system,
/// steal) in ms. Interrupt and softirq time (where loopback TCP is mostly processed) is left out,
/// because the kernel does not charge it to the process that caused it either.
pub fn parse_machine_busy_ms(stat: &str) -> Option<f64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[7];
    Some(busy as f64 * TICK_MS)
}

/// Busy CPU time of the whole machine so far, in ms.
pub fn machine_busy_ms() -> Option<f64> {
    parse_machine_busy_ms(&fs::read_to_string("/proc/stat").ok()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (a b) c) S 77 1234 1234 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 3 0 1 1 1";
        assert_eq!(parse_stat(line), Some((77, 42)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(2048));
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
    }

    #[test]
    fn parses_proc_stat() {
        let s = "cpu  100 5 50 1000 7 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_machine_busy_ms(s), Some(1580.0));
        assert_eq!(parse_machine_busy_ms("cpu 1 2"), None);
        assert_eq!(parse_machine_busy_ms(""), None);
        assert!(machine_busy_ms().is_some());
    }

    #[test]
    fn samples_own_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.processes >= 1);
        assert!(s.peak_rss_kib > 0);
        assert!(sample(u32::MAX).is_none());
    }
}
