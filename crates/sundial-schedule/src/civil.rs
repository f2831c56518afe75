//! Civil (wall-clock) date and time arithmetic at one-second resolution, without time zones.
//! Time zones enter only when a civil time is turned into instants (`spec.rs`).

/// A proleptic Gregorian date and time of day. Ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i32,
    pub month: i32,
    pub day: i32,
    pub hour: i32,
    pub minute: i32,
    pub second: i32,
}

pub fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week, 0 = Sunday.
pub fn weekday(year: i32, month: i32, day: i32) -> i32 {
    // Days since 1970-01-01 (a Thursday), by the civil-from-days inverse.
    let days = days_from_civil(year, month, day);
    (days + 4).rem_euclid(7) as i32
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i32, month: i32, day: i32) -> i64 {
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Civil {
    /// Midnight of the day after.
    pub fn next_day(self) -> Civil {
        let (mut year, mut month, mut day) = (self.year, self.month, self.day + 1);
        if day > days_in_month(year, month) {
            day = 1;
            month += 1;
            if month > 12 {
                month = 1;
                year += 1;
            }
        }
        Civil {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    pub fn start_of_hour(self) -> Civil {
        Civil {
            minute: 0,
            second: 0,
            ..self
        }
    }

    /// The start of the next hour (which may be the next day).
    pub fn next_hour_or_day(self) -> Civil {
        if self.hour >= 23 {
            self.next_day()
        } else {
            Civil {
                hour: self.hour + 1,
                minute: 0,
                second: 0,
                ..self
            }
        }
    }

    /// The start of the next minute (which may be the next hour or day).
    pub fn next_minute_or_day(self) -> Civil {
        if self.minute >= 59 {
            self.next_hour_or_day()
        } else {
            Civil {
                minute: self.minute + 1,
                second: 0,
                ..self
            }
        }
    }

    pub fn plus_one_second(self) -> Civil {
        if self.second >= 59 {
            self.next_minute_or_day()
        } else {
            Civil {
                second: self.second + 1,
                ..self
            }
        }
    }

    /// Seconds since the Unix epoch if this civil time were UTC.
    pub fn as_utc_seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// The civil time of a Unix second in UTC.
    pub fn from_utc_seconds(seconds: i64) -> Civil {
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400);
        // civil-from-days
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year: year as i32,
            month: month as i32,
            day: day as i32,
            hour: (secs / 3600) as i32,
            minute: (secs % 3600 / 60) as i32,
            second: (secs % 60) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_and_epoch_days() {
        assert_eq!(weekday(1970, 1, 1), 4);
        assert_eq!(weekday(2026, 12, 1), 2); // a Tuesday
        assert_eq!(weekday(2000, 2, 29), 2);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn utc_seconds_round_trip() {
        for s in [0, 951_782_400, 1_796_118_966, 4_102_444_799] {
            assert_eq!(Civil::from_utc_seconds(s).as_utc_seconds(), s);
        }
        let c = Civil::from_utc_seconds(1_796_118_966);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2026, 12, 1, 9, 56, 6)
        );
    }

    #[test]
    fn carries_across_month_and_year_ends() {
        let c = Civil {
            year: 2024,
            month: 2,
            day: 29,
            hour: 23,
            minute: 59,
            second: 59,
        };
        assert_eq!(
            c.plus_one_second(),
            Civil {
                year: 2024,
                month: 3,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
    }
}
