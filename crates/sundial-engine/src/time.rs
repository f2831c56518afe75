//! Time conversions. The engine keeps every instant as Unix milliseconds (`i64`) and every
//! span as milliseconds; protobuf `Timestamp`/`Duration` only appear at the edges.

use prost_wkt_types::{Duration, Timestamp};

/// Unix milliseconds to a protobuf timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Protobuf timestamp to Unix milliseconds.
pub fn timestamp_ms(ts: &Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// Milliseconds to a protobuf duration.
pub fn duration(ms: i64) -> Duration {
    Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A protobuf duration in milliseconds, rounding sub-millisecond remainders up so that a
/// positive duration never becomes zero. `None` and zero both mean "not set" (0).
pub fn duration_ms(d: Option<&Duration>) -> i64 {
    match d {
        None => 0,
        Some(d) => {
            let nanos = i64::from(d.nanos);
            d.seconds.saturating_mul(1000) + nanos / 1_000_000 + i64::from(nanos % 1_000_000 > 0)
        }
    }
}

/// True when the duration is negative (either field below zero).
pub fn is_negative(d: Option<&Duration>) -> bool {
    d.is_some_and(|d| d.seconds < 0 || d.nanos < 0)
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
}
