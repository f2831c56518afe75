//! The history driver's side of ResetWorkflowExecution: resolves the runs, asks the engine
//! for the new run (`sundial_engine::reset`) and commits it with the end of the workflow id's
//! current run in one commit, through the one transition path.
//!
//! Invariant: the new run is built from the base run's committed history as it stands at the
//! commit. When the base run is the current one (still taking events), the transition that
//! terminates it checks that nothing was added since the history was read; if something was,
//! the reset is computed again (a bounded number of times).

use super::{History, NewRun, encode_all, new_run_id};
use crate::error::ServiceError;
use std::sync::Arc;
use sundial_engine::EngineError;
use sundial_engine::reset::ResetParams;

/// What a reset asks for, resolved by the frontend.
pub struct ResetRequest {
    pub namespace: String,
    pub workflow_id: String,
    /// The run whose history is cut (empty: the current run).
    pub base_run_id: String,
    pub finish_event_id: i64,
    pub request_id: String,
    pub reason: String,
    /// What of the base run's events after the cut the new run gets again.
    pub reapply: sundial_engine::reset::Reapply,
}

/// The base run took events between reading its history and the commit.
const BASE_MOVED: &str = "the base run changed while it was being reset";
/// Attempts before a reset racing with a busy base run gives up (Unavailable: retryable).
const ATTEMPTS: usize = 5;

impl History {
    /// ResetWorkflowExecution: creates the new run and returns its id. A reset repeated with
    /// the request id of the run it created returns that run.
    pub async fn reset_workflow(&self, req: &ResetRequest) -> Result<String, ServiceError> {
        for _ in 0..ATTEMPTS {
            match self.reset_once(req).await {
                Err(ServiceError::FailedPrecondition(m)) if m == BASE_MOVED => continue,
                other => return other,
            }
        }
        Err(ServiceError::Unavailable(format!(
            "{BASE_MOVED} {ATTEMPTS} times; try again"
        )))
    }

    async fn reset_once(&self, req: &ResetRequest) -> Result<String, ServiceError> {
        let guard = self
            .start_lock(&req.namespace, &req.workflow_id)
            .lock_owned()
            .await;
        let current = self.handle(&req.namespace, &req.workflow_id, None).await?;
        let base = match req.base_run_id.as_str() {
            "" => current.clone(),
            run_id => {
                self.handle(&req.namespace, &req.workflow_id, Some(run_id))
                    .await?
            }
        };
        if !req.request_id.is_empty() {
            let current_request = self
                .read(&current, |e| e.state.start_request_id.clone())
                .await?;
            if current_request == req.request_id {
                return Ok(current.run_id.clone());
            }
        }
        let (base_state, events) = self
            .read(&base, |e| {
                let last = e.committed_next_event_id() - 1;
                e.events
                    .decode_range(1, last)
                    .map(|events| (e.state.clone(), events))
            })
            .await??;
        let seen_next_event_id = base_state.next_event_id;
        let reset = sundial_engine::reset::reset(ResetParams {
            base: &base_state,
            events: &events,
            finish_event_id: req.finish_event_id,
            new_run_id: new_run_id(),
            request_id: req.request_id.clone(),
            reason: req.reason.clone(),
            reapply: req.reapply,
            now: self.clock.now_ms(),
        })?;
        let run_id = reset.state.run_id.clone();
        let run = NewRun {
            events: encode_all(&reset.events),
            state: reset.state,
            effects: reset.effects,
            initial_update: None,
        };
        let base_is_current = Arc::ptr_eq(&base, &current);
        let reason = req.reason.clone();
        let new_run = run_id.clone();
        self.run_transition(
            &current,
            move |_, t| {
                if base_is_current && t.state.next_event_id != seen_next_event_id {
                    return Err(EngineError::FailedPrecondition(BASE_MOVED.into()));
                }
                if t.state.is_running() {
                    t.terminate_for_reset(&reason, &new_run)?;
                }
                Ok(())
            },
            |_, ()| (),
            Some((run, guard)),
        )
        .await?;
        Ok(run_id)
    }
}
