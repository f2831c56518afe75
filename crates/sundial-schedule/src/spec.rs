//! A schedule spec compiled: the union of its calendars and intervals, minus its exclusions,
//! within its start and end time, in its time zone, with deterministic jitter.
//!
//! Daylight-saving transitions are handled as Temporal handles them: a wall-clock time that
//! does not exist (skipped by a spring-forward) does not match, and a wall-clock time that
//! happens twice (in the hour repeated by a fall-back) matches both times.
//! Times have one-second resolution; jitter has millisecond resolution.

use crate::SpecError;
use crate::api::schedule::v1::{ScheduleSpec, StructuredCalendarSpec};
use crate::calendar::{self, CompiledCalendar};
use crate::civil::Civil;
use crate::cron;
use jiff::tz::{AmbiguousOffset, TimeZone};
use sundial_time as time;

/// Longest wall-clock fold (repeated span) looked back over when a fall-back is ahead.
const MAX_FOLD_SECONDS: i64 = 3 * 3600;

/// One matching time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextTime {
    /// The matching time itself (Unix milliseconds, whole seconds).
    pub nominal_ms: i64,
    /// The nominal time plus jitter: when the action is taken.
    pub actual_ms: i64,
}

/// A compiled spec. Invariant: `canonical` holds only structured calendars, intervals, the
/// resolved time zone name, and cleaned ranges: what DescribeSchedule shows.
#[derive(Debug, Clone)]
pub struct CompiledSpec {
    canonical: ScheduleSpec,
    zone: TimeZone,
    calendars: Vec<CompiledCalendar>,
    excludes: Vec<CompiledCalendar>,
    /// (interval, phase) in seconds.
    intervals: Vec<(i64, i64)>,
    start_s: Option<i64>,
    end_s: Option<i64>,
    jitter_ms: i64,
}

/// Resolves a time zone by IANA name ("" and "UTC" are UTC), or from TZif data.
fn load_zone(name: &str, data: &[u8]) -> Result<TimeZone, SpecError> {
    if !data.is_empty() {
        return TimeZone::tzif(name, data)
            .map_err(|e| SpecError(format!("invalid time zone data for {name}: {e}")));
    }
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| SpecError(format!("unknown time zone {name}")))
}

/// Turns cron strings and string calendars into structured calendars, checks every part, and
/// settles the time zone (cron strings must agree on theirs).
pub fn canonicalize(spec: &ScheduleSpec) -> Result<ScheduleSpec, SpecError> {
    let mut out = spec.clone();
    for cal in std::mem::take(&mut out.calendar) {
        out.structured_calendar
            .push(calendar::structured_from_calendar(&cal)?);
    }
    #[allow(deprecated)]
    for cal in std::mem::take(&mut out.exclude_calendar) {
        out.exclude_structured_calendar
            .push(calendar::structured_from_calendar(&cal)?);
    }
    let mut cron_zone: Option<String> = None;
    for text in std::mem::take(&mut out.cron_string) {
        let parsed = cron::parse(&text)?;
        if cron_zone.as_ref().is_some_and(|z| *z != parsed.time_zone) {
            return Err(SpecError("conflicting timezone names".into()));
        }
        cron_zone = Some(parsed.time_zone);
        out.structured_calendar.extend(parsed.calendar);
        out.interval.extend(parsed.interval);
    }
    if let Some(zone) = cron_zone.filter(|z| !z.is_empty()) {
        if (!out.timezone_name.is_empty() && out.timezone_name != zone)
            || !out.timezone_data.is_empty()
        {
            return Err(SpecError("conflicting timezone names".into()));
        }
        out.timezone_name = zone;
    }
    for cal in out
        .structured_calendar
        .iter()
        .chain(&out.exclude_structured_calendar)
    {
        calendar::validate_structured(cal)?;
    }
    for iv in &out.interval {
        let every = time::duration_ms(iv.interval.as_ref());
        if every < 1000 {
            return Err(SpecError("interval is too small".into()));
        }
        if time::is_negative(iv.phase.as_ref()) {
            return Err(SpecError("phase is negative".into()));
        }
        if time::duration_ms(iv.phase.as_ref()) >= every {
            return Err(SpecError("phase cannot be greater than Interval".into()));
        }
    }
    for cal in out
        .structured_calendar
        .iter_mut()
        .chain(out.exclude_structured_calendar.iter_mut())
    {
        calendar::clean(cal);
    }
    Ok(out)
}

fn compile_all(cals: &[StructuredCalendarSpec]) -> Vec<CompiledCalendar> {
    cals.iter().map(CompiledCalendar::new).collect()
}

impl CompiledSpec {
    pub fn compile(spec: &ScheduleSpec) -> Result<Self, SpecError> {
        let canonical = canonicalize(spec)?;
        let zone = load_zone(&canonical.timezone_name, &canonical.timezone_data)?;
        let intervals = canonical
            .interval
            .iter()
            .map(|iv| {
                (
                    time::duration_ms(iv.interval.as_ref()) / 1000,
                    time::duration_ms(iv.phase.as_ref()) / 1000,
                )
            })
            .collect();
        Ok(CompiledSpec {
            calendars: compile_all(&canonical.structured_calendar),
            excludes: compile_all(&canonical.exclude_structured_calendar),
            intervals,
            start_s: canonical
                .start_time
                .as_ref()
                .map(|t| time::timestamp_ms(t).div_euclid(1000)),
            end_s: canonical
                .end_time
                .as_ref()
                .map(|t| time::timestamp_ms(t).div_euclid(1000)),
            jitter_ms: time::duration_ms(canonical.jitter.as_ref()).max(0),
            zone,
            canonical,
        })
    }

    /// The spec as DescribeSchedule shows it.
    pub fn canonical(&self) -> &ScheduleSpec {
        &self.canonical
    }

    /// The first time strictly after `after_ms` at which the schedule acts, with jitter
    /// derived from `seed` and the nominal time (so the same inputs give the same answer).
    pub fn next(&self, seed: &str, after_ms: i64) -> Option<NextTime> {
        let mut after_s = after_ms.div_euclid(1000);
        if let Some(start) = self.start_s
            && after_s < start
        {
            // The first second of the range may itself match.
            after_s = start - 1;
        }
        let nominal = loop {
            let candidate = self.raw_next(after_s)?;
            if self.end_s.is_some_and(|end| candidate > end) {
                return None;
            }
            if !self.excluded(candidate) {
                break candidate;
            }
            after_s = candidate;
        };
        let mut max_jitter = self.jitter_ms;
        if let Some(following) = self.raw_next(nominal) {
            max_jitter = max_jitter.min((following - nominal) * 1000);
        }
        let nominal_ms = nominal * 1000;
        Some(NextTime {
            nominal_ms,
            actual_ms: nominal_ms + jitter(seed, nominal_ms, max_jitter),
        })
    }

    /// Every action time in `(start_ms, end_ms]`, at most `limit` of them.
    pub fn times_between(&self, seed: &str, start_ms: i64, end_ms: i64, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = start_ms;
        while out.len() < limit {
            match self.next(seed, t) {
                Some(n) if n.actual_ms <= end_ms => {
                    out.push(n.actual_ms);
                    t = n.actual_ms;
                }
                _ => break,
            }
        }
        out
    }

    fn excluded(&self, s: i64) -> bool {
        if self.excludes.is_empty() {
            return false;
        }
        let civil = self.civil_at(s);
        self.excludes.iter().any(|c| c.matches(&civil))
    }

    /// The earliest calendar or interval time after `after_s` (seconds), ignoring
    /// exclusions and bounds.
    fn raw_next(&self, after_s: i64) -> Option<i64> {
        let calendars = self
            .calendars
            .iter()
            .filter_map(|c| self.calendar_next(c, after_s));
        let intervals = self.intervals.iter().map(|&(every, phase)| {
            let every = every.max(1);
            (after_s - phase).div_euclid(every) * every + every + phase
        });
        calendars.chain(intervals).min()
    }

    fn civil_at(&self, s: i64) -> Civil {
        let offset = jiff::Timestamp::from_second(s)
            .map(|ts| i64::from(self.zone.to_offset(ts).seconds()))
            .unwrap_or(0);
        Civil::from_utc_seconds(s + offset)
    }

    /// The instants a civil time denotes here: none in a gap, two in a fold.
    fn instants(&self, c: &Civil) -> Vec<i64> {
        let Ok(dt) = jiff::civil::DateTime::new(
            c.year as i16,
            c.month as i8,
            c.day as i8,
            c.hour as i8,
            c.minute as i8,
            c.second as i8,
            0,
        ) else {
            return Vec::new();
        };
        let local = c.as_utc_seconds();
        match self.zone.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => vec![local - i64::from(offset.seconds())],
            AmbiguousOffset::Gap { .. } => Vec::new(),
            AmbiguousOffset::Fold { before, after } => vec![
                local - i64::from(before.seconds()),
                local - i64::from(after.seconds()),
            ],
        }
    }

    /// How far back (in wall-clock seconds) a fall-back within the next few hours makes
    /// earlier wall-clock times happen again after `after_s`.
    fn fold_ahead(&self, after_s: i64) -> i64 {
        let Ok(ts) = jiff::Timestamp::from_second(after_s) else {
            return 0;
        };
        let now_offset = i64::from(self.zone.to_offset(ts).seconds());
        self.zone
            .following(ts)
            .take_while(|tr| tr.timestamp().as_second() <= after_s + MAX_FOLD_SECONDS)
            .map(|tr| now_offset - i64::from(tr.offset().seconds()))
            .max()
            .unwrap_or(0)
            .clamp(0, MAX_FOLD_SECONDS)
    }

    fn calendar_next(&self, cal: &CompiledCalendar, after_s: i64) -> Option<i64> {
        let fold = self.fold_ahead(after_s);
        let mut c = self.civil_at(after_s - fold);
        if fold > 0 {
            // Also consider the looked-back start itself.
            c = Civil::from_utc_seconds(c.as_utc_seconds() - 1);
        }
        let mut best: Option<(i64, Civil)> = None;
        loop {
            c = cal.next_after(&c)?;
            if let Some((_, best_civil)) = best
                && c.as_utc_seconds() - best_civil.as_utc_seconds() > fold
            {
                break;
            }
            for instant in self.instants(&c) {
                if instant > after_s && best.is_none_or(|(b, _)| instant < b) {
                    best = Some((instant, c));
                }
            }
            if fold == 0 && best.is_some() {
                break;
            }
        }
        best.map(|(s, _)| s)
    }
}

/// Deterministic jitter in `[0, max_ms)`: a hash of the seed and the nominal time.
fn jitter(seed: &str, nominal_ms: i64, max_ms: i64) -> i64 {
    if max_ms <= 0 {
        return 0;
    }
    // FNV-1a, 64 bit: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes().chain(nominal_ms.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((u128::from(hash >> 32) * max_ms as u128) >> 32) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::schedule::v1::IntervalSpec;

    fn secs(rfc3339: &str) -> i64 {
        rfc3339
            .parse::<jiff::Timestamp>()
            .expect("test timestamp")
            .as_second()
    }

    fn times(spec: &ScheduleSpec, from: &str, to: &str) -> Vec<String> {
        let compiled = CompiledSpec::compile(spec).expect("valid spec");
        compiled
            .times_between("seed", secs(from) * 1000, secs(to) * 1000, 100)
            .into_iter()
            .map(|ms| {
                jiff::Timestamp::from_second(ms / 1000)
                    .expect("in range")
                    .to_string()
            })
            .collect()
    }

    fn cron(expressions: &[&str], zone: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron_string: expressions.iter().map(|s| s.to_string()).collect(),
            timezone_name: zone.into(),
            ..Default::default()
        }
    }

    #[test]
    fn weekday_cron_in_utc() {
        assert_eq!(
            times(
                &cron(&["0 9 * * MON-FRI"], ""),
                "2026-12-03T00:00:00Z",
                "2026-12-08T00:00:00Z"
            ),
            [
                "2026-12-03T09:00:00Z",
                "2026-12-04T09:00:00Z",
                "2026-12-07T09:00:00Z"
            ]
        );
    }

    #[test]
    fn repeated_hour_at_fall_back_matches_twice() {
        // New York leaves daylight saving time at 2026-11-01 02:00 (clocks go to 01:00).
        assert_eq!(
            times(
                &cron(&["30 1 * * *"], "America/New_York"),
                "2026-10-30T00:00:00Z",
                "2026-11-03T00:00:00Z"
            ),
            [
                "2026-10-30T05:30:00Z",
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
        // Every 20 minutes through the fold: both copies of 01:00-01:40, in instant order.
        assert_eq!(
            times(
                &cron(&["*/20 1 * * *"], "America/New_York"),
                "2026-11-01T04:50:00Z",
                "2026-11-01T07:00:00Z"
            ),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:20:00Z",
                "2026-11-01T06:40:00Z"
            ]
        );
    }

    #[test]
    fn skipped_hour_at_spring_forward_does_not_match() {
        // New York enters daylight saving time at 2026-03-08 02:00 (clocks go to 03:00).
        assert_eq!(
            times(
                &cron(&["CRON_TZ=America/New_York 30 2 * * *"], ""),
                "2026-03-06T00:00:00Z",
                "2026-03-10T12:00:00Z"
            ),
            [
                "2026-03-06T07:30:00Z",
                "2026-03-07T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ]
        );
    }

    #[test]
    fn berlin_time_zone_and_exclusions() {
        let mut spec = cron(&["0 12 * * *"], "Europe/Berlin");
        spec.exclude_structured_calendar =
            vec![crate::cron::parse("* * 2 * *").unwrap().calendar.unwrap()];
        assert_eq!(
            times(&spec, "2026-12-01T00:00:00Z", "2026-12-03T23:00:00Z"),
            ["2026-12-01T11:00:00Z", "2026-12-03T11:00:00Z"]
        );
    }

    #[test]
    fn intervals_with_phase_and_bounds() {
        let spec = ScheduleSpec {
            interval: vec![IntervalSpec {
                interval: Some(time::duration(90 * 60 * 1000)),
                phase: Some(time::duration(5 * 60 * 1000)),
            }],
            start_time: Some(time::timestamp(secs("2026-12-01T11:00:00Z") * 1000)),
            end_time: Some(time::timestamp(secs("2026-12-01T16:00:00Z") * 1000)),
            ..Default::default()
        };
        assert_eq!(
            times(&spec, "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
            [
                "2026-12-01T12:05:00Z",
                "2026-12-01T13:35:00Z",
                "2026-12-01T15:05:00Z"
            ]
        );
    }

    #[test]
    fn union_of_specs_in_order() {
        let mut spec = cron(&["0 0 * * *"], "");
        spec.interval = vec![IntervalSpec {
            interval: Some(time::duration(8 * 3600 * 1000)),
            phase: None,
        }];
        assert_eq!(
            times(&spec, "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
            [
                "2026-12-01T08:00:00Z",
                "2026-12-01T16:00:00Z",
                "2026-12-02T00:00:00Z"
            ]
        );
    }

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let mut spec = cron(&["* * * * *"], "");
        spec.jitter = Some(time::duration(30_000));
        let c = CompiledSpec::compile(&spec).unwrap();
        let base = secs("2026-12-01T00:00:00Z") * 1000;
        let a = c.next("s", base).unwrap();
        assert_eq!(a, c.next("s", base).unwrap());
        assert_eq!(a.nominal_ms, base + 60_000);
        assert!((base + 60_000..base + 90_000).contains(&a.actual_ms));
        assert_ne!(c.next("other seed", base), Some(a));
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let err = |spec: ScheduleSpec| CompiledSpec::compile(&spec).unwrap_err().0;
        assert_eq!(
            err(cron(&["0 9 * * *"], "Mars/Olympus")),
            "unknown time zone Mars/Olympus"
        );
        assert_eq!(
            err(cron(
                &["CRON_TZ=America/New_York 30 2 * * *", "0 9 * * *"],
                ""
            )),
            "conflicting timezone names"
        );
        assert_eq!(
            err(cron(
                &["CRON_TZ=America/New_York 30 2 * * *"],
                "Europe/Paris"
            )),
            "conflicting timezone names"
        );
        let interval = |every_ms, phase_ms| ScheduleSpec {
            interval: vec![IntervalSpec {
                interval: Some(time::duration(every_ms)),
                phase: Some(time::duration(phase_ms)),
            }],
            ..Default::default()
        };
        assert_eq!(err(interval(500, 0)), "interval is too small");
        assert_eq!(
            err(interval(10_000, 20_000)),
            "phase cannot be greater than Interval"
        );
    }

    #[test]
    fn describe_form_is_structured() {
        let c = CompiledSpec::compile(&cron(&["CRON_TZ=Asia/Tokyo 0 9 * * *"], "")).unwrap();
        assert!(c.canonical().cron_string.is_empty());
        assert_eq!(c.canonical().structured_calendar.len(), 1);
        assert_eq!(c.canonical().timezone_name, "Asia/Tokyo");
    }
}
