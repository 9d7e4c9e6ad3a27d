//! Memory use of this process, from `/proc/self/status` (Linux).

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
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
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
