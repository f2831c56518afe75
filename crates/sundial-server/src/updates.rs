//! Updates admitted to a run and not yet accepted or rejected. Admission is in memory only, as
//! in the reference server: a crash forgets an admitted update and the client retries it.
//! Once accepted, an update is durable (its event is in history, its id in the run's state).

use std::collections::{HashMap, VecDeque};
use sundial_engine::UpdateResult;
use sundial_engine::api::{
    enums::v1::UpdateWorkflowExecutionLifecycleStage as Stage,
    update::v1::{Outcome, Request},
};

/// How many rejected updates a run remembers, so that callers waiting on them (and retries of
/// the same update id) still see the rejection. A rejection leaves no trace in history.
pub const REMEMBERED_REJECTIONS: usize = 64;

/// One update admitted to the run and waiting for the workflow to accept or reject it.
#[derive(Debug, Clone)]
pub struct UpdateSlot {
    pub request: Request,
    /// `UpdateWorkflowExecutionLifecycleStage` as i32.
    pub stage: i32,
    pub outcome: Option<Outcome>,
}

/// A run's in-memory updates. Only what nothing else records is kept: admitted updates (in
/// admission order) until the workflow accepts or rejects them, and the last
/// [`REMEMBERED_REJECTIONS`] rejections. An accepted update is in the run's state, a completed
/// one in its history, so both leave the registry; its size is bounded by the in-flight
/// updates limit plus the remembered rejections.
#[derive(Debug, Default)]
pub struct UpdateRegistry {
    slots: HashMap<String, UpdateSlot>,
    order: VecDeque<String>,
    rejected: VecDeque<(String, Outcome)>,
}

impl UpdateRegistry {
    /// Stage and outcome of an update this registry knows (admitted or rejected).
    pub fn status(&self, update_id: &str) -> Option<(i32, Option<Outcome>)> {
        if let Some(slot) = self.slots.get(update_id) {
            return Some((slot.stage, slot.outcome.clone()));
        }
        self.rejected
            .iter()
            .find(|(id, _)| id == update_id)
            .map(|(_, outcome)| (Stage::Completed as i32, Some(outcome.clone())))
    }

    pub fn admit(&mut self, request: Request) {
        let id = request
            .meta
            .as_ref()
            .map(|m| m.update_id.clone())
            .unwrap_or_default();
        if self.slots.contains_key(&id) {
            return;
        }
        self.rejected.retain(|(rejected, _)| *rejected != id);
        self.order.push_back(id.clone());
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
        self.order.iter().filter_map(|id| self.slots.get(id))
    }

    /// Number of updates waiting for the workflow to accept or reject them.
    pub fn waiting_count(&self) -> usize {
        self.slots.len()
    }

    pub fn waiting_ids(&self) -> Vec<String> {
        self.order.iter().cloned().collect()
    }

    /// Everything the registry holds (admitted plus remembered rejections), for tests and
    /// metrics.
    pub fn len(&self) -> usize {
        self.slots.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn forget(&mut self, update_id: &str) -> bool {
        if self.slots.remove(update_id).is_none() {
            return false;
        }
        if let Some(i) = self.order.iter().position(|id| id == update_id) {
            self.order.remove(i);
        }
        true
    }

    /// Records what a workflow task completion did to updates (after its state and events
    /// were installed, so accepted and completed updates are found there).
    pub fn apply(&mut self, results: &[UpdateResult]) {
        for result in results {
            match result {
                UpdateResult::Accepted { update_id }
                | UpdateResult::Completed { update_id, .. } => {
                    self.forget(update_id);
                }
                UpdateResult::Rejected { update_id, failure } => {
                    self.forget(update_id);
                    if self.rejected.len() >= REMEMBERED_REJECTIONS {
                        self.rejected.pop_front();
                    }
                    let outcome = Outcome {
                        value: failure
                            .clone()
                            .map(sundial_engine::api::update::v1::outcome::Value::Failure),
                    };
                    self.rejected.push_back((update_id.clone(), outcome));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_engine::api::{failure::v1::Failure, update::v1::Meta};

    fn request(id: &str) -> Request {
        Request {
            meta: Some(Meta {
                update_id: id.into(),
                identity: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn accepted_and_completed_updates_leave_the_registry() {
        let mut registry = UpdateRegistry::default();
        for i in 0..100 {
            let id = format!("u{i}");
            registry.admit(request(&id));
            assert_eq!(registry.waiting_count(), 1);
            registry.apply(&[UpdateResult::Accepted {
                update_id: id.clone(),
            }]);
            registry.apply(&[UpdateResult::Completed {
                update_id: id,
                outcome: None,
            }]);
        }
        assert!(registry.is_empty());
        assert!(registry.waiting_ids().is_empty());
    }

    #[test]
    fn rejections_are_remembered_up_to_a_bound() {
        let mut registry = UpdateRegistry::default();
        for i in 0..(REMEMBERED_REJECTIONS + 50) {
            let id = format!("u{i}");
            registry.admit(request(&id));
            registry.apply(&[UpdateResult::Rejected {
                update_id: id,
                failure: Some(Failure {
                    message: "no".into(),
                    ..Default::default()
                }),
            }]);
        }
        assert_eq!(registry.len(), REMEMBERED_REJECTIONS);
        assert_eq!(registry.waiting_count(), 0);
        let last = format!("u{}", REMEMBERED_REJECTIONS + 49);
        let (stage, outcome) = registry.status(&last).expect("remembered");
        assert_eq!(stage, Stage::Completed as i32);
        assert!(outcome.is_some());
        assert!(
            registry.status("u0").is_none(),
            "oldest rejection forgotten"
        );
        // The same id admitted again is a new update.
        registry.admit(request(&last));
        assert_eq!(
            registry.status(&last).map(|s| s.0),
            Some(Stage::Admitted as i32)
        );
    }
}
