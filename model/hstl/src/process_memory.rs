//! What this process holds in memory, as Linux counts it (`/proc/self/status`): the figure `hstl
//! bench` reports and the kiosk's health report samples. `None` where the system does not say.

/// Resident memory now (`VmRSS`), in KiB.
pub fn resident_kib() -> Option<u64> {
    status_field("VmRSS:")
}

/// The most resident memory so far (`VmHWM`), in KiB.
pub fn peak_resident_kib() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib(&status, name)
}

fn parse_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_kib_and_a_missing_one_is_none() {
        let status = "Name:\thstl\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_kib(status, "VmRSS:"), Some(40960));
        assert_eq!(parse_kib(status, "VmHWM:"), Some(51200));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
        assert_eq!(parse_kib("VmRSS:\tlots\n", "VmRSS:"), None);
    }

    #[test]
    fn this_process_has_resident_memory_no_larger_than_its_peak() {
        let (now, peak) = (resident_kib().unwrap(), peak_resident_kib().unwrap());
        assert!(now > 0 && now <= peak, "{now} KiB now, {peak} KiB at most");
    }
}
