//! kaipo's own cost, as the Prometheus client libraries name it (`process_*`), read from
//! `/proc/self`.

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub start_time_seconds: f64,
}

/// None where `/proc` cannot be read (a hardened mount).
#[cfg(target_os = "linux")]
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let btime = std::fs::read_to_string("/proc/stat").ok()?;
    parse(&stat, &statm, &btime, clock_ticks(), page_size())
}

/// Other systems have no `/proc`; the `process_*` metrics are left out there.
#[cfg(not(target_os = "linux"))]
pub fn read() -> Option<ProcessStats> {
    None
}

#[cfg(target_os = "linux")]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).unwrap_or(4096)
}

#[cfg(any(target_os = "linux", test))]
fn parse(stat: &str, statm: &str, proc_stat: &str, ticks: f64, page: u64) -> Option<ProcessStats> {
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let cpu = (field(14)? + field(15)?) as f64 / ticks;
    let start = field(22)? as f64 / ticks;
    let resident = statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * page;
    let btime = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds: cpu,
        resident_bytes: resident,
        start_time_seconds: btime as f64 + start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 \
                    10000 300 18446744073709551615";
        let s = parse(
            stat,
            "2500 300 100 1 0 200 0\n",
            "cpu 1\nbtime 1700000000\n",
            100.0,
            4096,
        )
        .unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 300 * 4096);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert!(read().is_some());
    }
}
