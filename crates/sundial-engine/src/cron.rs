//! Cron schedules of cron workflows (`cron_schedule` on start), evaluated in UTC.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// Parses `expr`, with a message saying what is wrong when it is not a valid cron schedule.
pub fn parse(expr: &str) -> Result<croner::Cron, String> {
    let expr = expr.trim();
    if expr.starts_with("CRON_TZ=") || expr.starts_with("TZ=") {
        return Err(
            "time zones in cron_schedule are not supported by this Sundial version yet".into(),
        );
    }
    croner::Cron::from_str(expr).map_err(|e| format!("Invalid CronSchedule {expr:?}: {e}"))
}

/// The first time the schedule fires strictly after `after_ms` (Unix ms).
pub fn next_after(expr: &str, after_ms: i64) -> Result<i64, String> {
    let cron = parse(expr)?;
    let after = DateTime::<Utc>::from_timestamp_millis(after_ms).ok_or("time out of range")?;
    let next = cron
        .find_next_occurrence(&after, false)
        .map_err(|e| format!("cron schedule {expr:?}: {e}"))?;
    Ok(next.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_minute_and_errors() {
        // 2026-01-01T00:00:30Z -> next "* * * * *" is 00:01:00.
        let t = 1_767_225_630_000;
        assert_eq!(next_after("* * * * *", t).unwrap(), 1_767_225_660_000);
        assert_eq!(next_after("0 * * * *", t).unwrap(), 1_767_229_200_000);
        assert!(parse("not a cron").is_err());
        assert!(parse("CRON_TZ=Europe/Paris * * * * *").is_err());
    }
}
