//! Memory use of this process or another, from `/proc/PID/status` (Linux).

use serde::{Deserialize, Serialize};

/// Resident set sizes in KiB; `None` where `/proc` is not available.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Rss {
    /// `VmHWM`: the peak resident set size of the process so far.
    pub(crate) peak_kib: Option<u64>,
    /// `VmRSS`: the resident set size now.
    pub(crate) current_kib: Option<u64>,
}

impl Rss {
    pub(crate) fn now() -> Self {
        Self::read("/proc/self/status")
    }

    /// The resident set sizes of process `pid`.
    pub(crate) fn of_pid(pid: u32) -> Self {
        Self::read(&format!("/proc/{pid}/status"))
    }

    fn read(path: &str) -> Self {
        let status = std::fs::read_to_string(path).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Self {
            peak_kib: field("VmHWM:"),
            current_kib: field("VmRSS:"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_status_on_linux() {
        let rss = super::Rss::now();
        if cfg!(target_os = "linux") {
            assert!(rss.peak_kib.unwrap_or(0) >= rss.current_kib.unwrap_or(0));
            assert!(rss.current_kib.unwrap_or(0) > 0);
        }
    }
}
