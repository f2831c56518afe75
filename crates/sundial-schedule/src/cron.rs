//! Cron strings as Temporal accepts them: 5, 6 or 7 fields (`[second] minute hour
//! day-of-month month day-of-week [year]`), names of days and months, ranges and steps, the
//! `@hourly`-style shorthands, `@every <duration>[/<phase>]`, a `CRON_TZ=` or `TZ=` prefix,
//! and a `#` comment at the end.

use crate::SpecError;
use crate::api::schedule::v1::{CalendarSpec, IntervalSpec, StructuredCalendarSpec};
use crate::calendar::structured_from_calendar;

/// What one cron string means.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedCron {
    pub calendar: Option<StructuredCalendarSpec>,
    pub interval: Option<IntervalSpec>,
    /// The time zone named by a `CRON_TZ=`/`TZ=` prefix ("" when none).
    pub time_zone: String,
}

pub fn parse(cron: &str) -> Result<ParsedCron, SpecError> {
    let mut text = cron.trim();
    let mut time_zone = String::new();
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let Some((zone, fields)) = rest.split_once(char::is_whitespace) else {
                return Err(SpecError(
                    "CronString has time zone but missing fields".into(),
                ));
            };
            time_zone = zone.to_string();
            text = fields.trim();
            break;
        }
    }
    if let Some(rest) = text.strip_prefix("@every") {
        let interval = parse_every(rest.trim())?;
        return Ok(ParsedCron {
            calendar: None,
            interval: Some(interval),
            time_zone: String::new(),
        });
    }
    let (text, comment) = match text.split_once('#') {
        Some((fields, comment)) => (fields.trim(), comment.trim().to_string()),
        None => (text, String::new()),
    };
    let text = match text {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let mut cal = CalendarSpec {
        comment,
        ..Default::default()
    };
    let s = |i: usize| fields[i].to_string();
    match fields.len() {
        5 | 6 => {
            (
                cal.minute,
                cal.hour,
                cal.day_of_month,
                cal.month,
                cal.day_of_week,
            ) = (s(0), s(1), s(2), s(3), s(4));
            if fields.len() == 6 {
                cal.year = s(5);
            }
        }
        7 => {
            (cal.second, cal.minute, cal.hour, cal.day_of_month) = (s(0), s(1), s(2), s(3));
            (cal.month, cal.day_of_week, cal.year) = (s(4), s(5), s(6));
        }
        _ => {
            return Err(SpecError("CronString does not have 5-7 fields".into()));
        }
    }
    // A cron field of "*" for the time of day means every value, not the CalendarSpec
    // default of 0: the strings are taken as written.
    Ok(ParsedCron {
        calendar: Some(structured_from_calendar(&cal)?),
        interval: None,
        time_zone,
    })
}

fn parse_every(text: &str) -> Result<IntervalSpec, SpecError> {
    if text.is_empty() {
        return Err(SpecError("CronString does not have 5-7 fields".into()));
    }
    let (every, phase) = match text.split_once('/') {
        Some((every, phase)) => (every, Some(phase)),
        None => (text, None),
    };
    let interval = parse_duration(every)?;
    let phase = phase.map(parse_duration).transpose()?;
    Ok(IntervalSpec {
        interval: Some(interval),
        phase,
    })
}

/// A Go-style duration ("1h30m", "90s", "1.5h", "2d"), as Temporal's schedule parser takes it.
pub fn parse_duration(text: &str) -> Result<prost_wkt_types::Duration, SpecError> {
    let nanos = duration_nanos(text.trim(), true)
        .ok_or_else(|| SpecError(format!("time: invalid duration {text:?}")))?;
    Ok(prost_wkt_types::Duration {
        seconds: nanos / 1_000_000_000,
        nanos: (nanos % 1_000_000_000) as i32,
    })
}

/// Nanoseconds of a duration in Go's syntax (`time.ParseDuration`: an optional sign, then
/// number-and-unit pairs, or a lone "0"), with a `d` unit of 24 hours when `days` is set.
/// `None` when malformed (blanks included) or beyond `i64` nanoseconds.
pub(crate) fn duration_nanos(text: &str, days: bool) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number = &rest[..number_len];
        // "1.", ".5" and "1.5" are numbers; "." is not.
        if number.is_empty() || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" if days => 86_400e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_nanos += number * unit_nanos;
    }
    if !total_nanos.is_finite() || total_nanos > 9.2e18 {
        return None;
    }
    let nanos = total_nanos as i64;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::schedule::v1::Range;

    fn r(start: i32, end: i32) -> Range {
        Range {
            start,
            end,
            step: 1,
        }
    }

    #[test]
    fn five_field_cron() {
        let p = parse("0 9 * * MON-FRI").unwrap();
        let cal = p.calendar.unwrap();
        assert_eq!(cal.second, vec![r(0, 0)]);
        assert_eq!(cal.minute, vec![r(0, 0)]);
        assert_eq!(cal.hour, vec![r(9, 9)]);
        assert_eq!(cal.day_of_month, vec![r(1, 31)]);
        assert_eq!(cal.month, vec![r(1, 12)]);
        assert!(cal.year.is_empty());
        assert_eq!(cal.day_of_week, vec![r(1, 5)]);
        assert_eq!(p.time_zone, "");
    }

    #[test]
    fn seven_fields_time_zone_and_comment() {
        let p = parse("CRON_TZ=America/New_York 30 15 2 1 * * 2027 # note").unwrap();
        let cal = p.calendar.unwrap();
        assert_eq!(cal.second, vec![r(30, 30)]);
        assert_eq!(cal.minute, vec![r(15, 15)]);
        assert_eq!(cal.hour, vec![r(2, 2)]);
        assert_eq!(cal.year, vec![r(2027, 2027)]);
        assert_eq!(cal.comment, "note");
        assert_eq!(p.time_zone, "America/New_York");
        assert_eq!(parse("0 0 * * 1#2").unwrap().calendar.unwrap().comment, "2");
    }

    #[test]
    fn shorthands_and_every() {
        let daily = parse("@daily").unwrap().calendar.unwrap();
        assert_eq!(daily.hour, vec![r(0, 0)]);
        assert_eq!(daily.day_of_month, vec![r(1, 31)]);
        let weekly = parse("@weekly").unwrap().calendar.unwrap();
        assert_eq!(weekly.day_of_week, vec![r(0, 0)]);
        let every = parse("@every 90m/5m").unwrap().interval.unwrap();
        assert_eq!(every.interval.unwrap().seconds, 5400);
        assert_eq!(every.phase.unwrap().seconds, 300);
        assert_eq!(
            parse("@every 1h30m")
                .unwrap()
                .interval
                .unwrap()
                .interval
                .unwrap()
                .seconds,
            5400
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |s| parse(s).unwrap_err().0;
        assert_eq!(err("bogus"), "CronString does not have 5-7 fields");
        assert_eq!(err("* * * *"), "CronString does not have 5-7 fields");
        assert_eq!(err("61 * * * *"), "Minute is not in range [0-59]");
        assert_eq!(err("@every abc"), "time: invalid duration \"abc\"");
        assert_eq!(
            err("TZ=America/New_York"),
            "CronString has time zone but missing fields"
        );
        assert_eq!(err("0 0 * * 5L"), "DayOfWeek is not in range [0-7]");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1.5h").unwrap().seconds, 5400);
        assert_eq!(parse_duration("2d").unwrap().seconds, 172_800);
        assert_eq!(parse_duration("500ms").unwrap().nanos, 500_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration(".").is_err());
        assert_eq!(parse_duration("0").unwrap().seconds, 0);
        assert_eq!(parse_duration(".5m").unwrap().seconds, 30);
        assert_eq!(parse_duration("-1m").unwrap().seconds, -60);
        assert_eq!(duration_nanos("2d", false), None);
        assert_eq!(duration_nanos("1h1s", false), Some(3_601_000_000_000));
    }
}
