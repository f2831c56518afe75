//! Schedules, pure: Temporal's schedule specs (cron strings, calendars, intervals, exclusions,
//! time zones, jitter) compiled into matching times, and the state machine of one schedule
//! (buffer, overlap policies, catch-up window, pause, limited actions, backfills).
//!
//! Nothing here does IO or reads a clock; `sundial-server` drives it, persists each record
//! before acting on it, and performs the workflow starts it asks for.

pub mod calendar;
pub mod civil;
pub mod cron;
pub mod overlap;
pub mod schedule;
pub mod spec;
pub mod workflow_cron;

#[cfg(test)]
mod tests;

pub use schedule::{BufferedStart, NewSchedule, Plan, ScheduleMachine, ScheduleRecord};
pub use spec::CompiledSpec;
/// The Temporal message types schedules are made of.
pub use sundial_proto::temporal::api;
pub use workflow_cron::WorkflowCron;

/// A spec that cannot be compiled; the message says why, in Temporal's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Why a schedule operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    InvalidArgument(String),
    /// UpdateSchedule's conflict token does not match: the schedule changed since it was read.
    #[error("mismatched conflict token")]
    Conflict,
}
