//! The system clock, read where nothing may skip it (the virtual clock adds its offset here).

/// Current Unix time in milliseconds by the system clock.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
