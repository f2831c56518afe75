//! Sundial's execution engine: the pure state machine of one workflow execution.
//!
//! Every input (an RPC, a completed workflow task, a deadline) is one transition
//! `(state, input, now) -> (new events, new state, effects)`. Nothing in this crate does IO or
//! reads a clock: the caller passes `now` in, persists the result, and only then performs the
//! effects and replies. That makes every rule here testable and replayable.

pub mod deadline;
pub mod error;
pub mod fuzzing;
pub mod reset;
pub mod retry;
pub mod state;
pub use sundial_time as time;
pub mod transition;

pub mod activity;
pub mod activity_ops;
pub mod activity_options;
pub mod chain;
mod children;
pub mod commands;
pub mod nexus;
pub mod signal;
pub mod start;
pub mod start_policy;
mod terminate;
pub mod update;
pub mod validate;
pub mod workflow_options;
pub mod workflow_task;

#[cfg(test)]
mod tests;

pub use deadline::{Deadline, DeadlineKind, Wake};
pub use error::EngineError;
pub use start::{StartParams, new_execution};
pub use state::{ActivityInfo, ActivityPauseInfo, ExecutionState, TimerInfo, WorkflowTaskInfo};
pub use transition::{CreatedRun, Decided, Effect, Inputs, Limits, Persist, Transition};

pub use activity::{ActivityRef, HeartbeatReply};
pub use chain::{Continuation, NextRun};
pub use commands::{CompletionOutcome, TaskCompletion};
pub use signal::Signal;
pub use state::ParentInfo;
/// Re-export of the Temporal message types the engine speaks.
pub use sundial_proto::temporal::api;
pub use update::UpdateResult;
pub use workflow_task::{Poller, WorkflowTaskRef};
