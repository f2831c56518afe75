//! A workflow's `cron_schedule` (StartWorkflowExecution, child workflows), read as Temporal's
//! workflow cron reads it: robfig/cron's standard parser (`common/backoff/cron.go`).
//!
//! Accepted: exactly five fields (minute, hour, day of month, month, day of week; numbers,
//! three-letter names, `*`/`?`, ranges, steps, lists), the descriptors `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` and `@every <Go duration>`, each
//! optionally after a `CRON_TZ=<zone> ` or `TZ=<zone> ` prefix. Nothing is trimmed except
//! after the prefix (robfig's rule): `" @every 2s"` is refused, as the reference refuses it.
//!
//! Calendar specs compile into the same structured calendars and matcher as schedules
//! ([`CompiledSpec`]): the fields are read on the zone's wall clock, a time a spring-forward
//! skips does not match, one a fall-back repeats matches twice. When both day of month and
//! day of week are restricted (neither is a plain `*`), robfig matches either one; that is
//! the union of two calendars. `@every d` is not epoch-aligned: it fires `d` (cut to whole
//! seconds, at least one second) after the time it is asked about, cut to whole seconds.

use crate::SpecError;
use crate::api::schedule::v1::{Range, ScheduleSpec, StructuredCalendarSpec};
use crate::calendar::{Dialect, Field, ParsedField, parse_field};
use crate::cron::duration_nanos;
use crate::spec::CompiledSpec;

/// The reference's answer to a spec it cannot parse (InvalidArgument).
pub const INVALID: &str = "invalid CronSchedule.";
/// The reference's answer to a spec that parses but never matches (InvalidArgument).
pub const UNSATISFIABLE: &str =
    "invalid CronSchedule, no time can be found to satisfy the schedule";

/// A parsed workflow cron spec.
#[derive(Debug, Clone)]
pub struct WorkflowCron {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Matching wall-clock times in a zone, at whole seconds.
    Calendar(Box<CompiledSpec>),
    /// `@every`: this many milliseconds (a positive multiple of 1000) after the whole second.
    Every(i64),
}

fn invalid() -> SpecError {
    SpecError(INVALID.into())
}

/// Ceiling of `ms` to whole seconds (the reference's `Int64Ceil` of the backoff's seconds).
fn ceil_to_second(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000 + if ms.rem_euclid(1000) > 0 { 1000 } else { 0 }
}

impl WorkflowCron {
    /// Parses `spec`; every problem answers [`INVALID`], as the reference does.
    pub fn parse(spec: &str) -> Result<WorkflowCron, SpecError> {
        let mut text = spec;
        let mut zone = "";
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            // The zone runs from the first '=' to the first blank; the rest is trimmed.
            let (Some(eq), Some(blank)) = (text.find('='), text.find(' ')) else {
                return Err(invalid());
            };
            zone = text.get(eq + 1..blank).ok_or_else(invalid)?;
            text = text[blank..].trim();
        }
        if text.starts_with('@') {
            if let Some(every) = text.strip_prefix("@every ") {
                let nanos = duration_nanos(every, false).ok_or_else(invalid)?;
                // robfig: at least a second, cut to whole seconds.
                let ms = (nanos / 1_000_000_000).max(1) * 1000;
                return Ok(WorkflowCron {
                    kind: Kind::Every(ms),
                });
            }
            text = match text {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => return Err(invalid()),
            };
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(invalid());
        };
        let parse = |field, text| parse_field(Dialect::WorkflowCron, field, text);
        let parsed = (|| {
            Ok::<_, SpecError>((
                parse(Field::Minute, minute)?,
                parse(Field::Hour, hour)?,
                parse(Field::DayOfMonth, day_of_month)?,
                parse(Field::Month, month)?,
                parse(Field::DayOfWeek, day_of_week)?,
            ))
        })()
        .map_err(|_| invalid())?;
        let (minute, hour, dom, month, dow) = parsed;
        let calendar = |day_of_month: Vec<Range>, day_of_week: Vec<Range>| StructuredCalendarSpec {
            second: vec![Range {
                start: 0,
                end: 0,
                step: 1,
            }],
            minute: minute.ranges.clone(),
            hour: hour.ranges.clone(),
            day_of_month,
            month: month.ranges.clone(),
            year: Vec::new(),
            day_of_week,
            comment: String::new(),
        };
        let every = |field: Field| {
            let (start, end) = match field {
                Field::DayOfMonth => (1, 31),
                _ => (0, 6),
            };
            vec![Range {
                start,
                end,
                step: 1,
            }]
        };
        let structured_calendar = match (dom, dow) {
            (
                ParsedField {
                    ranges: d,
                    star: false,
                },
                ParsedField {
                    ranges: w,
                    star: false,
                },
            ) => {
                vec![
                    calendar(d, every(Field::DayOfWeek)),
                    calendar(every(Field::DayOfMonth), w),
                ]
            }
            (d, w) => vec![calendar(d.ranges, w.ranges)],
        };
        let spec = ScheduleSpec {
            structured_calendar,
            timezone_name: zone.to_string(),
            ..Default::default()
        };
        let compiled = CompiledSpec::compile(&spec).map_err(|_| invalid())?;
        Ok(WorkflowCron {
            kind: Kind::Calendar(Box::new(compiled)),
        })
    }

    /// Parses `spec` and checks that it matches some time after `now_ms`, as the reference
    /// validates a start's `cron_schedule` ([`INVALID`] or [`UNSATISFIABLE`]).
    pub fn validate(spec: &str, now_ms: i64) -> Result<WorkflowCron, SpecError> {
        let cron = WorkflowCron::parse(spec)?;
        if cron.next_after(now_ms).is_none() {
            return Err(SpecError(UNSATISFIABLE.into()));
        }
        Ok(cron)
    }

    /// robfig's `Next`: the first time after `t_ms` (Unix ms) the spec fires, always a whole
    /// second later than `t_ms` cut to whole seconds. `None` when it never fires again.
    pub fn next_after(&self, t_ms: i64) -> Option<i64> {
        match &self.kind {
            Kind::Calendar(spec) => spec.next("", t_ms).map(|n| n.nominal_ms),
            Kind::Every(every) => t_ms.div_euclid(1000).checked_mul(1000)?.checked_add(*every),
        }
    }

    /// How long the run that follows one scheduled at `scheduled_ms` waits when it is created
    /// at `now_ms` (the reference's `GetBackoffForNextSchedule`): until `scheduled_ms` if
    /// that is still ahead, else until the first time after `scheduled_ms` that is not before
    /// `now_ms` (times missed meanwhile are skipped); rounded up to whole seconds. A cron
    /// workflow's first run is asked with `scheduled_ms == now_ms`. `None` when the spec never
    /// fires again (the chain ends).
    pub fn backoff_ms(&self, scheduled_ms: i64, now_ms: i64) -> Option<i64> {
        let next = if now_ms < scheduled_ms {
            scheduled_ms
        } else {
            let first = self.next_after(scheduled_ms)?;
            if first >= now_ms {
                first
            } else {
                match &self.kind {
                    // The first whole-second match at or after `now_ms`.
                    Kind::Calendar(spec) => {
                        spec.next("", ceil_to_second(now_ms) - 1000)?.nominal_ms
                    }
                    Kind::Every(every) => {
                        let steps = (now_ms - first + every - 1) / every;
                        first.checked_add(steps.checked_mul(*every)?)?
                    }
                }
            }
        };
        Some(ceil_to_second(next - now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of an RFC 3339 time.
    fn ms(rfc3339: &str) -> i64 {
        rfc3339
            .parse::<jiff::Timestamp>()
            .expect("test time")
            .as_millisecond()
    }

    /// (spec, now, first backoff in seconds): the first run of a chain.
    const FIRST_BACKOFFS: &[(&str, &str, i64)] = &[
        ("* * * * *", "2026-12-01T21:31:43.100Z", 17),
        ("* * * * *", "2026-12-01T21:31:00Z", 60),
        ("*/7 * * * *", "2026-12-01T21:31:43.804Z", 197),
        ("0 * * * *", "2026-12-01T21:31:43.187Z", 1697),
        // New York is a whole number of hours off UTC; Kolkata (+05:30) is not.
        (
            "CRON_TZ=America/New_York 0 * * * *",
            "2026-12-01T21:31:43.187Z",
            1697,
        ),
        (
            "CRON_TZ=Asia/Kolkata 0 * * * *",
            "2026-12-01T21:31:43.489Z",
            3497,
        ),
        ("TZ=Asia/Kolkata @daily", "2026-12-01T18:29:59.500Z", 1),
        (
            "CRON_TZ=Europe/Paris  30 9 * * *",
            "2026-12-01T08:00:00Z",
            1800,
        ),
        ("@hourly", "2026-12-01T21:59:59.001Z", 1),
        ("@every 2s", "2026-12-01T21:31:42.257Z", 2),
        ("@every 2s", "2026-12-01T21:31:42Z", 2),
        ("@every 1.5s", "2026-12-01T21:31:42.741Z", 1),
        ("@every 0s", "2026-12-01T21:31:42.550Z", 1),
        ("@every 90m", "2026-12-01T21:31:42.989Z", 5400),
        ("@every 1h1m1s", "2026-12-01T21:31:42Z", 3661),
        ("? * * * *", "2026-12-01T21:31:43Z", 17),
        // 2026-12-01 is a Tuesday: day of month 1 or any Monday, whichever comes first.
        (
            "0 0 1 * MON",
            "2026-12-01T12:00:00Z",
            5 * 86_400 + 12 * 3600,
        ),
        ("0 0 2 * MON", "2026-12-01T12:00:00Z", 12 * 3600),
        // A plain star in either day field means both must match: Mondays only.
        (
            "0 0 * * MON",
            "2026-12-01T12:00:00Z",
            5 * 86_400 + 12 * 3600,
        ),
        ("0 0 1-31 * MON", "2026-12-01T12:00:00Z", 12 * 3600),
        (
            "0 0 */1 * MON",
            "2026-12-01T12:00:00Z",
            5 * 86_400 + 12 * 3600,
        ),
        ("0 0 */2 * MON", "2026-12-01T12:00:00Z", 86_400 + 12 * 3600),
        ("0 0 29 feb *", "2026-12-01T00:00:00Z", 455 * 86_400),
    ];

    #[test]
    fn first_backoffs_match_the_reference() {
        for &(spec, now, want) in FIRST_BACKOFFS {
            let now = ms(now);
            let cron = WorkflowCron::validate(spec, now).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(cron.backoff_ms(now, now), Some(want * 1000), "{spec}");
        }
    }

    /// (spec, the closing run's execution time, now, backoff in seconds): later runs.
    const NEXT_BACKOFFS: &[(&str, &str, &str, i64)] = &[
        // Two seconds after the previous execution time cut to whole seconds, not after now.
        (
            "@every 2s",
            "2026-12-01T21:31:44.257Z",
            "2026-12-01T21:31:44.300Z",
            2,
        ),
        (
            "@every 2s",
            "2026-12-01T21:31:44.257Z",
            "2026-12-01T21:31:45.100Z",
            1,
        ),
        // Times missed while the run was open are skipped.
        (
            "@every 2s",
            "2026-12-01T21:31:44.257Z",
            "2026-12-01T21:31:51.500Z",
            1,
        ),
        (
            "@every 2s",
            "2026-12-01T21:31:44.257Z",
            "2026-12-01T21:31:52Z",
            0,
        ),
        (
            "*/5 * * * *",
            "2026-12-01T21:30:00Z",
            "2026-12-01T21:31:10Z",
            230,
        ),
        (
            "*/5 * * * *",
            "2026-12-01T21:30:00Z",
            "2026-12-01T21:47:30Z",
            150,
        ),
        (
            "*/5 * * * *",
            "2026-12-01T21:30:00Z",
            "2026-12-01T21:50:00Z",
            0,
        ),
        // Not yet at the scheduled time: wait for it.
        (
            "*/5 * * * *",
            "2026-12-01T21:35:00Z",
            "2026-12-01T21:34:59.200Z",
            1,
        ),
        // Spring forward in New York (2026-03-08): 02:30 does not exist that day.
        (
            "CRON_TZ=America/New_York 30 2 * * *",
            "2026-03-07T07:30:00Z",
            "2026-03-07T08:00:00Z",
            2 * 86_400 - 90 * 60,
        ),
        // Fall back (2026-11-01): 01:30 happens twice, an hour apart.
        (
            "CRON_TZ=America/New_York 30 1 * * *",
            "2026-11-01T05:30:00Z",
            "2026-11-01T05:30:01Z",
            3599,
        ),
    ];

    #[test]
    fn next_backoffs_match_the_reference() {
        for &(spec, scheduled, now, want) in NEXT_BACKOFFS {
            let cron = WorkflowCron::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(
                cron.backoff_ms(ms(scheduled), ms(now)),
                Some(want * 1000),
                "{spec} {scheduled} {now}"
            );
        }
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        let now = ms("2026-12-01T00:00:00Z");
        for spec in [
            "",
            "bogus",
            "* * * *",
            "* * * * * *",
            "0 0 * * 7",
            "0 0 * * MONDAY",
            "0 0 * * mo",
            "0 0 * janu *",
            "60 * * * *",
            "* 24 * * *",
            "0 0 0 * *",
            "5-1 * * * *",
            "*/0 * * * *",
            "1-2-3 * * * *",
            "0 0 L * *",
            "@every 1d",
            "@every 1h/5m",
            "@every",
            "@every ",
            "@every abc",
            " @every 2s",
            "@every 2s ",
            "@every  2s",
            "@daily ",
            "@reboot",
            "CRON_TZ=Mars/Base 0 * * * *",
            "TZ=UTC",
            "TZ=",
            "CRON_TZ=UTC",
        ] {
            assert_eq!(
                WorkflowCron::validate(spec, now).unwrap_err().0,
                INVALID,
                "{spec:?}"
            );
        }
        for spec in ["0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            assert_eq!(
                WorkflowCron::validate(spec, now).unwrap_err().0,
                UNSATISFIABLE,
                "{spec}"
            );
        }
        // Leading blanks before five fields are fine (robfig splits on whitespace), and
        // the OR of the day fields makes an impossible day of month harmless.
        assert!(WorkflowCron::validate("  * * * * *", now).is_ok());
        assert!(WorkflowCron::validate("0 0 30 2 MON", now).is_ok());
        assert!(WorkflowCron::validate("CRON_TZ=UTC @every 5m", now).is_ok());
    }
}
