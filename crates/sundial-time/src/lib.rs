//! Time conversions. The engine keeps every instant as Unix milliseconds (`i64`) and every
//! span as milliseconds; protobuf `Timestamp`/`Duration` only appear at the edges.
//!
//! Conversions from the wire saturate instead of overflowing: a span is capped at
//! [`MAX_DURATION_MS`] (100 years, as the reference server caps durations), so that sums of a
//! few spans and an instant stay far inside `i64`.

use prost_wkt_types::{Duration, Timestamp};

/// Unix milliseconds to a protobuf timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The longest span a duration converts to: 100 years, the reference server's cap
/// (`maxAllowedDuration`).
pub const MAX_DURATION_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Earliest and latest instants a protobuf timestamp may hold (0001-01-01T00:00:00Z and
/// 9999-12-31T23:59:59.999Z), in Unix milliseconds.
pub const MIN_TIMESTAMP_MS: i64 = -62_135_596_800_000;
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Protobuf timestamp to Unix milliseconds, clamped to the range a timestamp may hold (so
/// that an instant plus a span never overflows).
pub fn timestamp_ms(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
        .clamp(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS)
}

/// Milliseconds to a protobuf duration.
pub fn duration(ms: i64) -> Duration {
    Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A protobuf duration in milliseconds, rounding sub-millisecond remainders up so that a
/// positive duration never becomes zero, and capped at [`MAX_DURATION_MS`] either way. `None`
/// and zero both mean "not set" (0).
pub fn duration_ms(d: Option<&Duration>) -> i64 {
    match d {
        None => 0,
        Some(d) => {
            let nanos = i64::from(d.nanos);
            d.seconds
                .saturating_mul(1000)
                .saturating_add(nanos / 1_000_000 + i64::from(nanos % 1_000_000 > 0))
                .clamp(-MAX_DURATION_MS, MAX_DURATION_MS)
        }
    }
}

/// True when the duration is negative (either field below zero).
pub fn is_negative(d: Option<&Duration>) -> bool {
    d.is_some_and(|d| d.seconds < 0 || d.nanos < 0)
}

/// Why a duration from a request is refused, in the reference server's words
/// (`ValidateAndCapProtoDuration`); `None` for an acceptable (possibly capped) one.
pub fn invalid_duration(d: Option<&Duration>) -> Option<&'static str> {
    let d = d?;
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Some("duration has seconds and nanos with different signs");
    }
    if is_negative(Some(d)) {
        return Some("negative duration");
    }
    None
}

/// Optional duration for an optional span: 0 means unset.
pub fn opt_duration(ms: i64) -> Option<Duration> {
    (ms > 0).then(|| duration(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(
            timestamp_ms(&timestamp(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(duration_ms(Some(&duration(2500))), 2500);
        assert_eq!(
            duration_ms(Some(&Duration {
                seconds: 0,
                nanos: 1
            })),
            1
        );
        assert_eq!(duration_ms(None), 0);
        assert!(is_negative(Some(&Duration {
            seconds: -1,
            nanos: 0
        })));
    }

    #[test]
    fn extreme_values_saturate_instead_of_overflowing() {
        let huge = Duration {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(duration_ms(Some(&huge)), MAX_DURATION_MS);
        let tiny = Duration {
            seconds: i64::MIN,
            nanos: -999_999_999,
        };
        assert_eq!(duration_ms(Some(&tiny)), -MAX_DURATION_MS);
        assert_eq!(invalid_duration(Some(&tiny)), Some("negative duration"));
        assert_eq!(invalid_duration(Some(&huge)), None);
        assert_eq!(
            invalid_duration(Some(&Duration {
                seconds: 1,
                nanos: -1
            })),
            Some("duration has seconds and nanos with different signs")
        );
        let far = Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(timestamp_ms(&far), MAX_TIMESTAMP_MS);
        let before = Timestamp {
            seconds: i64::MIN,
            nanos: -5,
        };
        assert_eq!(timestamp_ms(&before), MIN_TIMESTAMP_MS);
    }
}
