//! CPU time of a process from `/proc/<pid>/stat`, so server cost per certificate can be
//! compared without the load generator's own cost blurring it.

use std::time::Duration;

use crate::Error;

/// `AT_CLKTCK` in the ELF auxiliary vector: the kernel's `sysconf(_SC_CLK_TCK)` source. Read
/// from `/proc/self/auxv` because the workspace forbids the `unsafe` a libc call needs.
const AT_CLKTCK: usize = 17;

/// Clock ticks per second (`utime`/`stime` unit); 100 when the auxiliary vector says nothing.
pub fn clock_ticks_per_second() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| auxv_value(&auxv, AT_CLKTCK))
        .filter(|&t| t > 0)
        .map_or(100, |t| t as u64)
}

fn auxv_value(auxv: &[u8], wanted: usize) -> Option<usize> {
    const WORD: usize = size_of::<usize>();
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let (key, value) = pair.split_at(WORD);
        let key = usize::from_ne_bytes(key.try_into().ok()?);
        (key == wanted).then(|| value.try_into().ok().map(usize::from_ne_bytes))?
    })
}

/// `utime + stime` in clock ticks from the text of a `stat` file.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields restart after the
    // last ')'. Then field 3 is the state, so utime (14) and stime (15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) of `pid`, or of this process when `None`.
pub fn cpu_time(pid: Option<u32>) -> Result<Duration, Error> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Proc {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let ticks = parse_stat_ticks(&text).ok_or_else(|| Error::Proc {
        path,
        reason: "unexpected format".into(),
    })?;
    let hz = clock_ticks_per_second();
    Ok(Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_cases() {
        let cases = [
            (
                "good_plain",
                "1234 (pebble) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3",
                Some(300),
            ),
            (
                "good_name_with_paren_and_space",
                "99 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 7 8 0 0",
                Some(15),
            ),
            ("bad_truncated", "1 (x) S 1 2 3", None),
            ("bad_no_paren", "garbage", None),
        ];
        for (name, text, want) in cases {
            assert_eq!(parse_stat_ticks(text), want, "{name}");
        }
    }

    #[test]
    fn own_cpu_time_and_clock_rate_are_sane() {
        let hz = clock_ticks_per_second();
        assert!((10..=10_000).contains(&hz), "CLK_TCK {hz}");
        assert!(cpu_time(None).is_ok());
    }
}
