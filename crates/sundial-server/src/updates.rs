//! Updates admitted to a run and not yet accepted or rejected. Admission is in memory only, as
//! in the reference server: a crash forgets an admitted update and the client retries it.
//! Once accepted, an update is durable (its event is in history, its id in the run's state).

use std::collections::HashMap;
use sundial_engine::UpdateResult;
use sundial_engine::api::{
    enums::v1::UpdateWorkflowExecutionLifecycleStage as Stage,
    history::v1::history_event::Attributes,
    update::v1::{Outcome, Request},
};

/// One update the run knows about in memory.
#[derive(Debug, Clone)]
pub struct UpdateSlot {
    pub request: Request,
    /// `UpdateWorkflowExecutionLifecycleStage` as i32.
    pub stage: i32,
    pub outcome: Option<Outcome>,
}

/// A run's in-memory updates, in admission order.
#[derive(Debug, Default)]
pub struct UpdateRegistry {
    slots: HashMap<String, UpdateSlot>,
    order: Vec<String>,
}

impl UpdateRegistry {
    pub fn get(&self, update_id: &str) -> Option<&UpdateSlot> {
        self.slots.get(update_id)
    }

    pub fn admit(&mut self, request: Request) {
        let id = request
            .meta
            .as_ref()
            .map(|m| m.update_id.clone())
            .unwrap_or_default();
        self.order.push(id.clone());
        self.slots.insert(
            id,
            UpdateSlot {
                request,
                stage: Stage::Admitted as i32,
                outcome: None,
            },
        );
    }

    /// Updates still waiting for the workflow to accept or reject them, in order.
    pub fn waiting(&self) -> impl Iterator<Item = &UpdateSlot> {
        self.order
            .iter()
            .filter_map(|id| self.slots.get(id))
            .filter(|s| s.stage == Stage::Admitted as i32)
    }

    pub fn waiting_ids(&self) -> Vec<String> {
        self.waiting()
            .filter_map(|s| s.request.meta.as_ref().map(|m| m.update_id.clone()))
            .collect()
    }

    /// Records what a workflow task completion did to updates.
    pub fn apply(&mut self, results: &[UpdateResult]) {
        for result in results {
            let (id, stage, outcome) = match result {
                UpdateResult::Accepted { update_id } => (update_id, Stage::Accepted, None),
                UpdateResult::Rejected { update_id, failure } => (
                    update_id,
                    Stage::Completed,
                    Some(Outcome {
                        value: failure
                            .clone()
                            .map(sundial_engine::api::update::v1::outcome::Value::Failure),
                    }),
                ),
                UpdateResult::Completed { update_id, outcome } => {
                    (update_id, Stage::Completed, outcome.clone())
                }
            };
            if let Some(slot) = self.slots.get_mut(id.as_str()) {
                slot.stage = stage as i32;
                if outcome.is_some() {
                    slot.outcome = outcome;
                }
            }
        }
    }
}

/// Where an update stands, from memory, the run's state, or its history.
pub fn status(
    entry: &crate::history::RunEntry,
    update_id: &str,
) -> Result<Option<(i32, Option<Outcome>)>, crate::error::ServiceError> {
    if let Some(slot) = entry.updates.lock().get(update_id) {
        return Ok(Some((slot.stage, slot.outcome.clone())));
    }
    if entry
        .state
        .accepted_updates
        .iter()
        .any(|u| u.update_id == update_id)
    {
        return Ok(Some((Stage::Accepted as i32, None)));
    }
    entry.events.find_newest(|e| match e.attributes {
        Some(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(a))
            if a.meta.as_ref().is_some_and(|m| m.update_id == update_id) =>
        {
            Some((Stage::Completed as i32, a.outcome))
        }
        _ => None,
    })
}
