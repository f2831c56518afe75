//! Calendar specs: Temporal's range strings (`"1-5/2,8"`, `"mon-fri"`) parsed into structured
//! ranges, structured ranges checked and cleaned, and compiled into bit sets that answer which
//! civil (wall-clock) times match.
//!
//! Semantics follow Temporal's: every field must match; a field without ranges matches nothing,
//! except the year, which then matches every year; day of week 7 is Sunday, like 0.
//!
//! Range strings come in two dialects ([`Dialect`]): a schedule's (Temporal's own parser) and
//! a workflow's `cron_schedule` (robfig/cron's, which the reference server uses there). Both
//! produce the same structured ranges, so one matcher serves both.

use crate::SpecError;
use crate::api::schedule::v1::{CalendarSpec, Range, StructuredCalendarSpec};
use crate::civil::Civil;

/// Earliest and latest years a calendar can match (as Temporal's).
pub const MIN_YEAR: i32 = 2000;
pub const MAX_YEAR: i32 = 2100;

/// A field of a calendar spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    Year,
    DayOfWeek,
}

impl Field {
    /// The name used in error messages (Temporal's).
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "Second",
            Field::Minute => "Minute",
            Field::Hour => "Hour",
            Field::DayOfMonth => "DayOfMonth",
            Field::Month => "Month",
            Field::Year => "Year",
            Field::DayOfWeek => "DayOfWeek",
        }
    }

    /// Values accepted when parsing strings of a dialect (a schedule's day of week allows 7
    /// for Sunday).
    fn parse_bounds(self, dialect: Dialect) -> (i32, i32) {
        match (self, dialect) {
            (Field::DayOfWeek, Dialect::Schedule) => (0, 7),
            (other, _) => other.bounds(),
        }
    }

    /// Values a structured range may hold.
    fn bounds(self) -> (i32, i32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::Year => (MIN_YEAR, MAX_YEAR),
            Field::DayOfWeek => (0, 6),
        }
    }

    /// What an empty string means in a `CalendarSpec`.
    fn default_expression(self) -> &'static str {
        match self {
            Field::Second | Field::Minute | Field::Hour => "0",
            _ => "*",
        }
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// Which parser's rules a range string follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Temporal's schedule specs: names by prefix (months three letters at least, weekdays
    /// two), day of week 0-7, blanks around parts ignored, an empty field takes its default.
    Schedule,
    /// A workflow's `cron_schedule` (robfig/cron): names exactly three letters, day of week
    /// 0-6, `?` means `*`.
    WorkflowCron,
}

fn not_in_range(field: Field, dialect: Dialect) -> SpecError {
    let (min, max) = field.parse_bounds(dialect);
    SpecError(format!("{} is not in range [{min}-{max}]", field.name()))
}

/// True when `lower` names `full` in the dialect: a long enough prefix (schedules) or exactly
/// its first three letters (workflow cron).
fn names(dialect: Dialect, full: &str, lower: &str, min_prefix: usize) -> bool {
    match dialect {
        Dialect::Schedule => lower.len() >= min_prefix && full.starts_with(lower),
        Dialect::WorkflowCron => lower.len() == 3 && full.starts_with(lower),
    }
}

/// One value: a decimal number, or a month or weekday name in those fields.
fn parse_value(dialect: Dialect, field: Field, text: &str, min: i32) -> Result<i32, SpecError> {
    let (_, max) = field.parse_bounds(dialect);
    let lower = text.to_ascii_lowercase();
    let named = match field {
        Field::Month => MONTHS
            .iter()
            .position(|m| names(dialect, m, &lower, 3))
            .map(|i| i as i32 + 1),
        Field::DayOfWeek => WEEKDAYS
            .iter()
            .position(|d| names(dialect, d, &lower, 2))
            .map(|i| i as i32),
        _ => None,
    };
    let value = match named {
        Some(v) => v,
        None => text
            .parse::<i32>()
            .map_err(|_| not_in_range(field, dialect))?,
    };
    if value < min || value > max {
        return Err(not_in_range(field, dialect));
    }
    Ok(value)
}

/// Parses one field's expression of a schedule spec into canonical ranges (end >= start,
/// step >= 1).
pub fn parse_ranges(field: Field, expression: &str) -> Result<Vec<Range>, SpecError> {
    parse_field(Dialect::Schedule, field, expression).map(|f| f.ranges)
}

/// One field's expression, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedField {
    /// Canonical ranges (end >= start, step >= 1).
    pub ranges: Vec<Range>,
    /// Some part is `*` (or `?`) without a step above 1. robfig/cron reads day of month and
    /// day of week together when either is such a star, and either one otherwise.
    pub star: bool,
}

/// Parses one field's expression in `dialect`.
pub fn parse_field(
    dialect: Dialect,
    field: Field,
    expression: &str,
) -> Result<ParsedField, SpecError> {
    let mut text = expression.trim();
    if text.is_empty() && dialect == Dialect::Schedule {
        text = field.default_expression();
    }
    let (min, max) = field.parse_bounds(dialect);
    let mut ranges = Vec::new();
    let mut star = false;
    for part in text.split(',') {
        let part = match dialect {
            Dialect::Schedule => part.trim(),
            Dialect::WorkflowCron => part,
        };
        let (body, step) = match part.split_once('/') {
            None => (part, None),
            Some((body, step)) => {
                if step.contains('/') {
                    return Err(SpecError(format!("{} has too many slashes", field.name())));
                }
                match step.trim().parse::<i32>() {
                    Ok(s) if s >= 1 => (body, Some(s)),
                    _ => return Err(SpecError(format!("{} has invalid Step", field.name()))),
                }
            }
        };
        let is_star = body == "*" || (body == "?" && dialect == Dialect::WorkflowCron);
        let (start, end) = if is_star {
            // "*" is every value a matching time can have (Sunday once, as 0).
            star |= step.is_none_or(|s| s == 1);
            (min, field.bounds().1)
        } else if let Some((low, high)) = body.split_once('-') {
            if high.contains('-') {
                return Err(SpecError(format!("{} has too many dashes", field.name())));
            }
            let start = parse_value(dialect, field, low.trim(), min)?;
            let end = parse_value(dialect, field, high.trim(), min)
                .map_err(|_| end_error(field, dialect))?;
            if end < start {
                return Err(end_error(field, dialect));
            }
            (start, end)
        } else {
            let start = parse_value(dialect, field, body, min)?;
            // "x/y" runs from x to the end of the field.
            (start, if step.is_some() { max } else { start })
        };
        push_range(field, &mut ranges, start, end, step.unwrap_or(1));
    }
    Ok(ParsedField { ranges, star })
}

fn end_error(field: Field, dialect: Dialect) -> SpecError {
    let (min, max) = field.parse_bounds(dialect);
    SpecError(format!(
        "{} End is before Start or not in range [{min}-{max}]",
        field.name()
    ))
}

/// Adds a range, folding day of week 7 into 0 so that structured ranges stay within 0-6.
fn push_range(field: Field, ranges: &mut Vec<Range>, start: i32, end: i32, step: i32) {
    if field == Field::DayOfWeek && end == 7 {
        if start == 7 {
            ranges.push(Range {
                start: 0,
                end: 0,
                step: 1,
            });
            return;
        }
        ranges.push(Range {
            start,
            end: 6,
            step,
        });
        if (7 - start) % step == 0 {
            ranges.push(Range {
                start: 0,
                end: 0,
                step: 1,
            });
        }
        return;
    }
    ranges.push(Range { start, end, step });
}

/// A `CalendarSpec` (strings) as a `StructuredCalendarSpec`.
pub fn structured_from_calendar(cal: &CalendarSpec) -> Result<StructuredCalendarSpec, SpecError> {
    Ok(StructuredCalendarSpec {
        second: parse_ranges(Field::Second, &cal.second)?,
        minute: parse_ranges(Field::Minute, &cal.minute)?,
        hour: parse_ranges(Field::Hour, &cal.hour)?,
        day_of_month: parse_ranges(Field::DayOfMonth, &cal.day_of_month)?,
        month: parse_ranges(Field::Month, &cal.month)?,
        // Every year is the empty list.
        year: if cal.year.trim().is_empty() || cal.year.trim() == "*" {
            Vec::new()
        } else {
            parse_ranges(Field::Year, &cal.year)?
        },
        day_of_week: parse_ranges(Field::DayOfWeek, &cal.day_of_week)?,
        comment: cal.comment.clone(),
    })
}

fn fields(cal: &StructuredCalendarSpec) -> [(Field, &Vec<Range>); 7] {
    [
        (Field::Second, &cal.second),
        (Field::Minute, &cal.minute),
        (Field::Hour, &cal.hour),
        (Field::DayOfMonth, &cal.day_of_month),
        (Field::Month, &cal.month),
        (Field::Year, &cal.year),
        (Field::DayOfWeek, &cal.day_of_week),
    ]
}

/// Checks a structured calendar given by a client; the message lists every problem.
pub fn validate_structured(cal: &StructuredCalendarSpec) -> Result<(), SpecError> {
    let mut problems = Vec::new();
    for (field, ranges) in fields(cal) {
        let (min, max) = field.bounds();
        let name = field.name();
        for r in ranges {
            if r.start < min || r.start > max {
                problems.push(format!("{name} Start is not in range [{min}-{max}]"));
            }
            if r.end != 0 && (r.end < r.start || r.end > max) {
                problems.push(format!(
                    "{name} End is before Start or not in range [{min}-{max}]"
                ));
            }
            if r.step < 0 {
                problems.push(format!("{name} has invalid Step"));
            }
        }
    }
    if cal.comment.len() > MAX_COMMENT_LEN {
        problems.push("comment is too long".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SpecError(format!(
            "invalid calendar spec: {}",
            problems.join(", ")
        )))
    }
}

/// Longest comment a calendar may carry.
pub const MAX_COMMENT_LEN: usize = 200;

/// Fills the defaults a client may leave out (end = start, step = 1), as Describe shows them.
pub fn clean(cal: &mut StructuredCalendarSpec) {
    for ranges in [
        &mut cal.second,
        &mut cal.minute,
        &mut cal.hour,
        &mut cal.day_of_month,
        &mut cal.month,
        &mut cal.year,
        &mut cal.day_of_week,
    ] {
        for r in ranges.iter_mut() {
            r.end = r.end.max(r.start);
            r.step = r.step.max(1);
        }
    }
}

/// A structured calendar compiled to bit sets. Invariant: bit `v` of a field's set is on
/// exactly when value `v` matches (years relative to [`MIN_YEAR`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledCalendar {
    second: u64,
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
    /// `None`: every year.
    year: Option<u128>,
}

fn bits(ranges: &[Range], offset: i32) -> u128 {
    let mut set = 0u128;
    for r in ranges {
        let step = r.step.max(1);
        let end = r.end.max(r.start);
        let mut v = r.start;
        while v <= end {
            let bit = v - offset;
            if (0..128).contains(&bit) {
                set |= 1 << bit;
            }
            v += step;
        }
    }
    set
}

impl CompiledCalendar {
    pub fn new(cal: &StructuredCalendarSpec) -> Self {
        let low = |r: &[Range]| bits(r, 0) as u64;
        let mut day_of_week = low(&cal.day_of_week);
        // Sunday may be written as 7.
        if day_of_week & (1 << 7) != 0 {
            day_of_week |= 1;
        }
        CompiledCalendar {
            second: low(&cal.second),
            minute: low(&cal.minute),
            hour: low(&cal.hour),
            day_of_month: low(&cal.day_of_month),
            month: low(&cal.month),
            day_of_week,
            year: (!cal.year.is_empty()).then(|| bits(&cal.year, MIN_YEAR)),
        }
    }

    fn year_matches(&self, year: i32) -> bool {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return false;
        }
        self.year
            .is_none_or(|set| set & (1u128 << (year - MIN_YEAR)) != 0)
    }

    fn date_matches(&self, year: i32, month: i32, day: i32) -> bool {
        self.year_matches(year)
            && has(self.month, month)
            && has(self.day_of_month, day)
            && has(self.day_of_week, crate::civil::weekday(year, month, day))
    }

    /// True when the civil time matches every field.
    pub fn matches(&self, t: &Civil) -> bool {
        self.date_matches(t.year, t.month, t.day)
            && has(self.hour, t.hour)
            && has(self.minute, t.minute)
            && has(self.second, t.second)
    }

    /// The first matching civil time strictly after `t`, or `None` past [`MAX_YEAR`].
    pub fn next_after(&self, t: &Civil) -> Option<Civil> {
        let mut c = t.plus_one_second();
        loop {
            if c.year > MAX_YEAR {
                return None;
            }
            if !self.date_matches(c.year, c.month, c.day) {
                c = c.next_day();
                continue;
            }
            let Some(hour) = first_at_or_after(self.hour, c.hour, 23) else {
                c = c.next_day();
                continue;
            };
            if hour != c.hour {
                c = Civil { hour, ..c }.start_of_hour();
            }
            let Some(minute) = first_at_or_after(self.minute, c.minute, 59) else {
                c = c.next_hour_or_day();
                continue;
            };
            if minute != c.minute {
                c = Civil {
                    minute,
                    second: 0,
                    ..c
                };
            }
            let Some(second) = first_at_or_after(self.second, c.second, 59) else {
                c = c.next_minute_or_day();
                continue;
            };
            return Some(Civil { second, ..c });
        }
    }
}

fn has(set: u64, v: i32) -> bool {
    (0..64).contains(&v) && set & (1 << v) != 0
}

/// The smallest value `>= from` (and `<= max`) in the set.
fn first_at_or_after(set: u64, from: i32, max: i32) -> Option<i32> {
    (from..=max).find(|&v| has(set, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i32, end: i32, step: i32) -> Range {
        Range { start, end, step }
    }

    #[test]
    fn parses_range_expressions() {
        assert_eq!(parse_ranges(Field::Minute, "").unwrap(), vec![r(0, 0, 1)]);
        assert_eq!(
            parse_ranges(Field::Minute, "1-5/2,8").unwrap(),
            vec![r(1, 5, 2), r(8, 8, 1)]
        );
        assert_eq!(
            parse_ranges(Field::Minute, "10/15").unwrap(),
            vec![r(10, 59, 15)]
        );
        assert_eq!(parse_ranges(Field::Hour, "*/2").unwrap(), vec![r(0, 23, 2)]);
        assert_eq!(
            parse_ranges(Field::DayOfWeek, "*").unwrap(),
            vec![r(0, 6, 1)]
        );
        assert_eq!(
            parse_ranges(Field::DayOfWeek, "MON,wed").unwrap(),
            vec![r(1, 1, 1), r(3, 3, 1)]
        );
        assert_eq!(
            parse_ranges(Field::DayOfWeek, "Tue-Thu").unwrap(),
            vec![r(2, 4, 1)]
        );
        assert_eq!(
            parse_ranges(Field::DayOfWeek, "7").unwrap(),
            vec![r(0, 0, 1)]
        );
        assert_eq!(
            parse_ranges(Field::DayOfWeek, "5-7").unwrap(),
            vec![r(5, 6, 1), r(0, 0, 1)]
        );
        assert_eq!(
            parse_ranges(Field::Month, "janu,DEC").unwrap(),
            vec![r(1, 1, 1), r(12, 12, 1)]
        );
    }

    #[test]
    fn refuses_bad_expressions_with_temporals_messages() {
        let err = |f, s| parse_ranges(f, s).unwrap_err().0;
        assert_eq!(err(Field::Minute, "x"), "Minute is not in range [0-59]");
        assert_eq!(err(Field::Minute, "61"), "Minute is not in range [0-59]");
        assert_eq!(err(Field::Minute, "1-2-3"), "Minute has too many dashes");
        assert_eq!(err(Field::Minute, "*/0"), "Minute has invalid Step");
        assert_eq!(
            err(Field::Minute, "5-1"),
            "Minute End is before Start or not in range [0-59]"
        );
        assert_eq!(err(Field::Year, "1999"), "Year is not in range [2000-2100]");
        assert_eq!(
            err(Field::DayOfWeek, "funday"),
            "DayOfWeek is not in range [0-7]"
        );
        assert_eq!(
            err(Field::DayOfMonth, "L"),
            "DayOfMonth is not in range [1-31]"
        );
    }

    #[test]
    fn validates_structured_ranges() {
        let cal = StructuredCalendarSpec {
            hour: vec![r(30, 0, 0), r(5, 3, 0), r(1, 2, -1)],
            ..Default::default()
        };
        assert_eq!(
            validate_structured(&cal).unwrap_err().0,
            "invalid calendar spec: Hour Start is not in range [0-23], \
             Hour End is before Start or not in range [0-23], Hour has invalid Step"
        );
    }

    fn civil(y: i32, mo: i32, d: i32, h: i32, mi: i32, s: i32) -> Civil {
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        }
    }

    #[test]
    fn finds_next_matching_civil_times() {
        let weekdays_at_nine = structured_from_calendar(&CalendarSpec {
            hour: "9".into(),
            day_of_week: "mon-fri".into(),
            ..Default::default()
        })
        .unwrap();
        let c = CompiledCalendar::new(&weekdays_at_nine);
        // 2026-12-04 is a Friday.
        assert_eq!(
            c.next_after(&civil(2026, 12, 4, 9, 0, 0)),
            Some(civil(2026, 12, 7, 9, 0, 0))
        );
        assert_eq!(
            c.next_after(&civil(2026, 12, 4, 8, 59, 59)),
            Some(civil(2026, 12, 4, 9, 0, 0))
        );
        let leap = CompiledCalendar::new(
            &structured_from_calendar(&CalendarSpec {
                day_of_month: "29".into(),
                month: "2".into(),
                ..Default::default()
            })
            .unwrap(),
        );
        assert_eq!(
            leap.next_after(&civil(2026, 3, 1, 0, 0, 0)),
            Some(civil(2028, 2, 29, 0, 0, 0))
        );
        let never = CompiledCalendar::new(
            &structured_from_calendar(&CalendarSpec {
                day_of_month: "31".into(),
                month: "2".into(),
                ..Default::default()
            })
            .unwrap(),
        );
        assert_eq!(never.next_after(&civil(2026, 1, 1, 0, 0, 0)), None);
        let every_20s = CompiledCalendar::new(
            &structured_from_calendar(&CalendarSpec {
                second: "*/20".into(),
                minute: "*".into(),
                hour: "*".into(),
                ..Default::default()
            })
            .unwrap(),
        );
        assert_eq!(
            every_20s.next_after(&civil(2026, 12, 31, 23, 59, 45)),
            Some(civil(2027, 1, 1, 0, 0, 0))
        );
    }
}
