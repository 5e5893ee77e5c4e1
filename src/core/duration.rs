//! Human durations, as configurations and job configurations write them: `500ms`, `5s`, `1m30s`, `1h`. Pure:
//! both the configuration files (`crate::config`) and the job types (`crate::jobs`) read them.

use std::time::Duration;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;
const NANOS_PER_MIN: u128 = 60 * NANOS_PER_SEC;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MIN;
/// Digits accepted on each side of the decimal point; keeps the arithmetic far from overflow.
const DURATION_DIGITS_MAX: usize = 20;
const UNITS_HELP: &str = "units: ms, s, m, h";

/// Parses a human duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h` from largest to
/// smallest, each at most once; the number may have a fraction (`1.5s`). Examples: `500ms`, `5s`, `1m30s`, `1h`.
///
/// Durations are counted in whole milliseconds, so a value with a finer part (`1.0005s`) is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |reason: String| format!("invalid duration {text:?}: {reason}");
    let s = text.trim();
    if s.starts_with('-') {
        return Err(bad("durations cannot be negative".to_owned()));
    }
    if s.is_empty() {
        return Err(bad(format!("write a number and a unit, e.g. \"5s\" ({UNITS_HELP})")));
    }
    if s.contains(char::is_whitespace) {
        return Err(bad("remove the spaces, e.g. \"1m30s\"".to_owned()));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    // The rank of the previous unit: units must strictly decrease (h > m > s > ms).
    let mut previous_rank = u8::MAX;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(bad(format!("expected a number at {rest:?} ({UNITS_HELP})")));
        }
        let unit_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let (unit_nanos, rank) = match unit {
            "h" => (NANOS_PER_HOUR, 3),
            "m" => (NANOS_PER_MIN, 2),
            "s" => (NANOS_PER_SEC, 1),
            "ms" => (NANOS_PER_MILLI, 0),
            "" => return Err(bad(format!("the number {number} has no unit ({UNITS_HELP})"))),
            other => return Err(bad(format!("unknown unit {other:?} ({UNITS_HELP})"))),
        };
        if rank >= previous_rank {
            return Err(bad("write the units from largest to smallest, each at most once (e.g. 1m30s)".to_owned()));
        }
        previous_rank = rank;
        total = total.checked_add(number_nanos(number, unit_nanos).map_err(bad)?).ok_or_else(|| bad(too_large()))?;
        rest = next;
    }
    if !total.is_multiple_of(NANOS_PER_MILLI) {
        return Err(bad("durations are counted in whole milliseconds; drop the finer part".to_owned()));
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| bad(too_large()))?;
    // The remainder is below one second, so it fits in u32.
    let nanos = u32::try_from(total % NANOS_PER_SEC).map_err(|_| bad(too_large()))?;
    Ok(Duration::new(secs, nanos))
}

fn too_large() -> String {
    "the duration is too large".to_owned()
}

/// `number` (digits, optionally `.` and digits) times `unit_nanos`, in nanoseconds.
fn number_nanos(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let malformed = || format!("{number:?} is not a number; write digits with an optional fraction, e.g. 1.5");
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(malformed());
    }
    if whole.len() > DURATION_DIGITS_MAX || fraction.len() > DURATION_DIGITS_MAX {
        return Err(too_large());
    }
    let digits = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse::<u128>().map_err(|_| malformed())
        }
    };
    let whole_nanos = digits(whole)?.checked_mul(unit_nanos).ok_or_else(too_large)?;
    // At most 20 fraction digits: 10^20 * 3.6e12 stays far below u128::MAX.
    let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| too_large())?);
    let scaled = digits(fraction)?.checked_mul(unit_nanos).ok_or_else(too_large)?;
    if !scaled.is_multiple_of(scale) {
        return Err("durations are counted in whole milliseconds; drop the finer part".to_owned());
    }
    whole_nanos.checked_add(scaled / scale).ok_or_else(too_large)
}

/// Formats a duration in the shortest exact form [`parse_duration`] reads back: `500ms`, `5s`, `1.5s`, `1m30s`,
/// `1h`; zero is `0s`. A part finer than a millisecond is written as a fraction of milliseconds.
pub fn format_duration(d: Duration) -> String {
    let total = d.as_nanos();
    if total == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let hours = total / NANOS_PER_HOUR;
    let minutes = total % NANOS_PER_HOUR / NANOS_PER_MIN;
    let rest = total % NANOS_PER_MIN;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if rest > 0 {
        let (whole, fraction, width, unit) = if rest < NANOS_PER_SEC {
            (rest / NANOS_PER_MILLI, rest % NANOS_PER_MILLI, 6, "ms")
        } else {
            (rest / NANOS_PER_SEC, rest % NANOS_PER_SEC, 9, "s")
        };
        out.push_str(&whole.to_string());
        if fraction > 0 {
            let digits = format!("{fraction:0width$}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
        out.push_str(unit);
    }
    out
}

/// Serde support for `std::time::Duration` fields written as human strings (`#[serde(with = "serde_duration")]`).
pub mod serde_duration {
    use std::fmt;
    use std::time::Duration;

    use serde::{de, Deserializer, Serializer};

    /// Writes the duration with [`super::format_duration`].
    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*d))
    }

    /// Reads a duration string with [`super::parse_duration`]; anything else is refused.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"500ms\", \"5s\" or \"1m30s\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            super::parse_duration(text).map_err(E::custom)
        }
    }
}
