//! One schedule's state machine. Pure: every operation takes `now` and returns what the driver
//! must do (start workflows, cancel or terminate running ones, wake up later); the driver
//! persists the record before doing any of it.
//!
//! Invariants:
//! - `last_processed_ms` only moves forward; every nominal time up to it has been considered
//!   once (buffered, skipped, or counted as missed).
//! - A start leaves the buffer for `starting` before the driver is told about it, and leaves
//!   `starting` only when the driver reports its outcome. A start still in `starting` after a
//!   restart is performed again with the same request id, so it happens at most once.
//! - `running_workflows` lists the started, non-overlapping workflows not yet seen closed.

use crate::api::common::v1::{Memo, Payloads, SearchAttributes, WorkflowExecution};
use crate::api::enums::v1::{
    ScheduleOverlapPolicy as Policy, WorkflowExecutionStatus as Status, WorkflowIdReusePolicy,
};
use crate::api::failure::v1::Failure;
use crate::api::schedule::v1::{
    BackfillRequest, Schedule, ScheduleActionResult, ScheduleInfo, ScheduleListEntry,
    ScheduleListInfo, SchedulePatch, SchedulePolicies, ScheduleState,
};
use crate::api::workflowservice::v1::StartWorkflowExecutionRequest;
use crate::civil::Civil;
use crate::overlap;
use crate::spec::CompiledSpec;
use crate::{ScheduleError, SpecError};
use sundial_proto::json_payload::{json_payload, json_string};
use sundial_time as time;

/// Temporal's defaults and limits for schedules.
pub const DEFAULT_CATCHUP_WINDOW_MS: i64 = 365 * 24 * 3600 * 1000;
pub const MIN_CATCHUP_WINDOW_MS: i64 = 10 * 1000;
pub const RECENT_ACTIONS: usize = 10;
pub const FUTURE_ACTIONS: usize = 10;
pub const LIST_RECENT_ACTIONS: usize = 5;
pub const LIST_FUTURE_ACTIONS: usize = 5;
pub const MAX_BUFFER: usize = 1000;
/// Most matching times ListScheduleMatchingTimes returns.
pub const MAX_MATCHING_TIMES: usize = 1000;

/// The search attributes a scheduled workflow carries.
pub const SCHEDULED_START_TIME: &str = "TemporalScheduledStartTime";
pub const SCHEDULED_BY_ID: &str = "TemporalScheduledById";

/// A start waiting in the buffer, or handed to the driver.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BufferedStart {
    #[prost(int64, tag = "1")]
    pub nominal_ms: i64,
    #[prost(int64, tag = "2")]
    pub actual_ms: i64,
    /// `ScheduleOverlapPolicy` as i32; UNSPECIFIED follows the schedule's policy.
    #[prost(int32, tag = "3")]
    pub overlap_policy: i32,
    /// Triggered or backfilled by a client (not subject to pause, limits or catch-up).
    #[prost(bool, tag = "4")]
    pub manual: bool,
    /// Assigned when the start leaves the buffer; the same on every attempt.
    #[prost(string, tag = "5")]
    pub request_id: String,
}

/// Everything persisted about one schedule. Encoded with prost; tags are the storage format.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScheduleRecord {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub schedule_id: String,
    /// Spec in canonical form, policies resolved.
    #[prost(message, optional, tag = "3")]
    pub schedule: Option<Schedule>,
    #[prost(message, optional, tag = "4")]
    pub info: Option<ScheduleInfo>,
    #[prost(message, optional, tag = "5")]
    pub memo: Option<Memo>,
    #[prost(message, optional, tag = "6")]
    pub search_attributes: Option<SearchAttributes>,
    #[prost(int64, tag = "7")]
    pub conflict_token: i64,
    #[prost(int64, tag = "8")]
    pub last_processed_ms: i64,
    #[prost(message, repeated, tag = "9")]
    pub buffered: Vec<BufferedStart>,
    /// Backfills not fully buffered yet (start time advanced as they are).
    #[prost(message, repeated, tag = "10")]
    pub backfills: Vec<BackfillRequest>,
    #[prost(message, repeated, tag = "11")]
    pub starting: Vec<BufferedStart>,
    #[prost(message, optional, tag = "12")]
    pub last_completion_result: Option<Payloads>,
    #[prost(message, optional, tag = "13")]
    pub continued_failure: Option<Failure>,
    /// Unique per created schedule: request ids are `<incarnation>-<seq>`.
    #[prost(string, tag = "14")]
    pub incarnation: String,
    #[prost(int64, tag = "15")]
    pub next_request_seq: i64,
}

/// What the driver must do after an operation (once the record is committed).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Starts to perform (each with its request id); report each outcome back.
    pub starts: Vec<BufferedStart>,
    pub cancel: Vec<WorkflowExecution>,
    pub terminate: Vec<WorkflowExecution>,
    /// When to call `advance` again (Unix ms), if the schedule has anything coming.
    pub wake_at_ms: Option<i64>,
}

/// Inputs of CreateSchedule the state machine keeps.
pub struct NewSchedule {
    pub namespace: String,
    pub schedule_id: String,
    pub schedule: Schedule,
    pub memo: Option<Memo>,
    pub search_attributes: Option<SearchAttributes>,
    /// A fresh unique id (the driver's uuid).
    pub incarnation: String,
}

/// A schedule with its compiled spec. `spec` is `None` only for a record whose stored spec no
/// longer compiles (e.g. a time zone removed from the database); such a schedule takes no
/// scheduled actions and says why in `invalid_schedule_error`.
#[derive(Debug, Clone)]
pub struct ScheduleMachine {
    pub record: ScheduleRecord,
    spec: Option<CompiledSpec>,
}

fn policy(value: i32) -> Policy {
    Policy::try_from(value).unwrap_or(Policy::Unspecified)
}

/// RFC 3339 in UTC at second resolution ("2026-12-01T09:56:06Z"), as appended to workflow ids.
pub fn rfc3339_seconds(ms: i64) -> String {
    let c = Civil::from_utc_seconds(ms.div_euclid(1000));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Checks what CreateSchedule/UpdateSchedule may not accept, with Temporal's messages.
pub fn validate(schedule: &Schedule) -> Result<(), ScheduleError> {
    let start = schedule
        .action
        .as_ref()
        .and_then(|a| a.action.as_ref())
        .map(|crate::api::schedule::v1::schedule_action::Action::StartWorkflow(s)| s)
        .ok_or_else(|| {
            ScheduleError::InvalidArgument(
                "Schedule action is not set: a schedule needs a start_workflow action.".into(),
            )
        })?;
    if start.workflow_id.is_empty() {
        return Err(ScheduleError::InvalidArgument(
            "WorkflowId is not set on request.".into(),
        ));
    }
    if start
        .workflow_type
        .as_ref()
        .is_none_or(|t| t.name.is_empty())
    {
        return Err(ScheduleError::InvalidArgument(
            "WorkflowType is not set on request.".into(),
        ));
    }
    if start.task_queue.as_ref().is_none_or(|q| q.name.is_empty()) {
        return Err(ScheduleError::InvalidArgument(
            "missing task queue name".into(),
        ));
    }
    for (name, d) in [
        (
            "WorkflowExecutionTimeout",
            &start.workflow_execution_timeout,
        ),
        ("WorkflowRunTimeout", &start.workflow_run_timeout),
        ("WorkflowTaskTimeout", &start.workflow_task_timeout),
    ] {
        if time::is_negative(d.as_ref()) {
            return Err(ScheduleError::InvalidArgument(format!("Invalid {name}.")));
        }
    }
    if let Some(p) = &schedule.policies {
        if Policy::try_from(p.overlap_policy).is_err() {
            return Err(ScheduleError::InvalidArgument(format!(
                "Invalid overlap policy {}.",
                p.overlap_policy
            )));
        }
        if time::is_negative(p.catchup_window.as_ref()) {
            return Err(ScheduleError::InvalidArgument(
                "Invalid catchup window: it is negative.".into(),
            ));
        }
    }
    if let Some(state) = &schedule.state
        && state.limited_actions
        && state.remaining_actions < 0
    {
        return Err(ScheduleError::InvalidArgument(
            "Invalid remaining actions: it is negative.".into(),
        ));
    }
    Ok(())
}

fn spec_error(e: SpecError) -> ScheduleError {
    ScheduleError::InvalidArgument(format!("Invalid schedule spec: {}", e.0))
}

/// Fills defaults so that Describe shows them: SKIP, the one-year catch-up window.
fn resolve_policies(schedule: &mut Schedule) {
    let p = schedule
        .policies
        .get_or_insert_with(SchedulePolicies::default);
    if p.overlap_policy == Policy::Unspecified as i32 {
        p.overlap_policy = Policy::Skip as i32;
    }
    if p.catchup_window.is_none() {
        p.catchup_window = Some(time::duration(DEFAULT_CATCHUP_WINDOW_MS));
    }
    schedule.state.get_or_insert_with(ScheduleState::default);
}

impl ScheduleMachine {
    /// A new schedule, created at `now`.
    pub fn create(new: NewSchedule, now: i64) -> Result<Self, ScheduleError> {
        let mut schedule = new.schedule;
        validate(&schedule)?;
        let spec = CompiledSpec::compile(&schedule.spec.clone().unwrap_or_default())
            .map_err(spec_error)?;
        schedule.spec = Some(spec.canonical().clone());
        resolve_policies(&mut schedule);
        let record = ScheduleRecord {
            namespace: new.namespace,
            schedule_id: new.schedule_id,
            schedule: Some(schedule),
            info: Some(ScheduleInfo {
                create_time: Some(time::timestamp(now)),
                ..Default::default()
            }),
            memo: new.memo,
            search_attributes: new.search_attributes,
            conflict_token: 1,
            last_processed_ms: now,
            incarnation: new.incarnation,
            ..Default::default()
        };
        Ok(ScheduleMachine {
            record,
            spec: Some(spec),
        })
    }

    /// A schedule loaded from storage.
    pub fn from_record(mut record: ScheduleRecord) -> Self {
        let compiled = CompiledSpec::compile(&record.schedule().spec.clone().unwrap_or_default());
        let info = record.info.get_or_insert_with(ScheduleInfo::default);
        #[allow(deprecated)]
        match &compiled {
            Ok(_) => info.invalid_schedule_error.clear(),
            Err(e) => info.invalid_schedule_error = e.0.clone(),
        }
        ScheduleMachine {
            record,
            spec: compiled.ok(),
        }
    }

    fn schedule_mut(&mut self) -> &mut Schedule {
        self.record.schedule.get_or_insert_with(Schedule::default)
    }

    fn info_mut(&mut self) -> &mut ScheduleInfo {
        self.record.info.get_or_insert_with(ScheduleInfo::default)
    }

    fn state(&self) -> ScheduleState {
        self.record.schedule().state.clone().unwrap_or_default()
    }

    fn state_mut(&mut self) -> &mut ScheduleState {
        self.schedule_mut()
            .state
            .get_or_insert_with(ScheduleState::default)
    }

    fn policies(&self) -> SchedulePolicies {
        self.record.schedule().policies.unwrap_or_default()
    }

    /// The seed of this schedule's jitter.
    fn seed(&self) -> String {
        format!("{}-{}", self.record.namespace, self.record.schedule_id)
    }

    fn catchup_window_ms(&self) -> i64 {
        match self.policies().catchup_window {
            None => DEFAULT_CATCHUP_WINDOW_MS,
            Some(d) => time::duration_ms(Some(&d)).max(MIN_CATCHUP_WINDOW_MS),
        }
    }

    fn resolve(&self, value: i32) -> Policy {
        match policy(value) {
            Policy::Unspecified => match policy(self.policies().overlap_policy) {
                Policy::Unspecified => Policy::Skip,
                p => p,
            },
            p => p,
        }
    }

    /// May a scheduled (not manual) action be taken now?
    fn can_take_scheduled_action(&self) -> bool {
        let state = self.state();
        !state.paused && (!state.limited_actions || state.remaining_actions > 0)
    }

    fn add_start(&mut self, nominal_ms: i64, actual_ms: i64, overlap_policy: i32, manual: bool) {
        if self.record.buffered.len() >= MAX_BUFFER {
            self.info_mut().buffer_dropped += 1;
            return;
        }
        self.record.buffered.push(BufferedStart {
            nominal_ms,
            actual_ms,
            overlap_policy,
            manual,
            request_id: String::new(),
        });
    }

    /// Buffers every scheduled time in `(from, to]`; returns the next time after `to`.
    fn process_range(&mut self, from_ms: i64, to_ms: i64) -> Option<i64> {
        let spec = self.spec.clone()?;
        let seed = self.seed();
        if !self.can_take_scheduled_action() {
            // Paused or out of actions: the range passes without actions and without
            // counting as missed.
            return spec.next(&seed, to_ms).map(|n| n.actual_ms);
        }
        let catchup = self.catchup_window_ms();
        let updated_ms = self
            .record
            .info
            .as_ref()
            .and_then(|i| i.update_time.as_ref())
            .map_or(i64::MIN, time::timestamp_ms);
        let mut cursor = from_ms;
        loop {
            let next = spec.next(&seed, cursor)?;
            if next.actual_ms > to_ms {
                return Some(next.actual_ms);
            }
            cursor = next.actual_ms;
            if next.nominal_ms < updated_ms {
                continue;
            }
            if to_ms - next.actual_ms > catchup {
                self.info_mut().missed_catchup_window += 1;
                continue;
            }
            self.add_start(
                next.nominal_ms,
                next.actual_ms,
                Policy::Unspecified as i32,
                false,
            );
        }
    }

    /// Buffers backfilled times, a bounded number per call so that a huge backfill cannot
    /// stall the schedule; returns true while some remain.
    fn process_backfills(&mut self) -> bool {
        let Some(spec) = self.spec.clone() else {
            self.record.backfills.clear();
            return false;
        };
        let seed = self.seed();
        while let Some(backfill) = self.record.backfills.first().cloned() {
            let room = (MAX_BUFFER / 2).saturating_sub(self.record.buffered.len());
            if room == 0 {
                return true;
            }
            let start = backfill.start_time.as_ref().map_or(0, time::timestamp_ms);
            let end = backfill.end_time.as_ref().map_or(0, time::timestamp_ms);
            let mut cursor = start;
            let mut taken = 0;
            let mut finished = true;
            while let Some(next) = spec.next(&seed, cursor) {
                if next.actual_ms > end {
                    break;
                }
                if taken == room {
                    finished = false;
                    break;
                }
                self.add_start(
                    next.nominal_ms,
                    next.actual_ms,
                    backfill.overlap_policy,
                    true,
                );
                taken += 1;
                cursor = next.actual_ms;
            }
            if finished {
                self.record.backfills.remove(0);
            } else {
                self.record.backfills[0].start_time = Some(time::timestamp(cursor));
                return true;
            }
        }
        false
    }

    fn next_request_id(&mut self) -> String {
        self.record.next_request_seq += 1;
        format!(
            "{}-{}",
            self.record.incarnation, self.record.next_request_seq
        )
    }

    /// Decides the buffer; moves the starts that happen now to `starting`.
    fn process_buffer(&mut self) -> (bool, bool) {
        let has_action = self.record.schedule().action.is_some();
        if !has_action || self.record.buffered.is_empty() {
            self.record.buffered.clear();
            return (false, false);
        }
        let running = !self.info().running_workflows.is_empty()
            || self
                .record
                .starting
                .iter()
                .any(|s| self.resolve(s.overlap_policy) != Policy::AllowAll);
        let buffer = std::mem::take(&mut self.record.buffered);
        let decision = overlap::decide(buffer.len(), running, |i| {
            self.resolve(buffer[i].overlap_policy)
        });
        self.info_mut().overlap_skipped += decision.skipped as i64;
        let mut now: Vec<usize> = decision.overlapping.clone();
        now.extend(decision.exclusive);
        now.sort_unstable();
        for i in now {
            let mut start = buffer[i].clone();
            if !start.manual {
                if !self.can_take_scheduled_action() {
                    continue;
                }
                let state = self.state();
                if state.limited_actions {
                    self.state_mut().remaining_actions -= 1;
                    self.record.conflict_token += 1;
                }
            }
            start.request_id = self.next_request_id();
            self.record.starting.push(start);
        }
        self.record.buffered = decision.kept.iter().map(|&i| buffer[i].clone()).collect();
        (decision.cancel_running, decision.terminate_running)
    }

    /// Processes time up to `now`, pending backfills and the buffer.
    pub fn advance(&mut self, now: i64) -> Plan {
        let from = self.record.last_processed_ms;
        let to = now.max(from);
        let mut next = self.process_range(from, to);
        self.record.last_processed_ms = to;
        let more_backfills = self.process_backfills();
        let (cancel, terminate) = self.process_buffer();
        if !self.can_take_scheduled_action() {
            next = None;
        }
        if more_backfills {
            next = Some(now + 1000);
        }
        let running = self.info().running_workflows.clone();
        Plan {
            starts: self.record.starting.clone(),
            cancel: if cancel && !terminate {
                running.clone()
            } else {
                Vec::new()
            },
            terminate: if terminate { running } else { Vec::new() },
            wake_at_ms: next,
        }
    }

    pub fn info(&self) -> &ScheduleInfo {
        static EMPTY: std::sync::OnceLock<ScheduleInfo> = std::sync::OnceLock::new();
        self.record
            .info
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(ScheduleInfo::default))
    }

    /// The StartWorkflowExecution request of a start (workflow id with the nominal time
    /// appended, scheduled-by search attributes, the last run's result or failure).
    pub fn start_request(&self, start: &BufferedStart) -> Option<StartWorkflowExecutionRequest> {
        use crate::api::schedule::v1::schedule_action::Action;
        let Some(Action::StartWorkflow(action)) = self
            .record
            .schedule()
            .action
            .as_ref()
            .and_then(|a| a.action.clone())
        else {
            return None;
        };
        let mut workflow_id = action.workflow_id.clone();
        if !self.policies().keep_original_workflow_id {
            workflow_id.push('-');
            workflow_id.push_str(&rfc3339_seconds(start.nominal_ms));
        }
        let mut attributes = action.search_attributes.clone().unwrap_or_default();
        attributes.indexed_fields.insert(
            SCHEDULED_START_TIME.into(),
            json_payload(json_string(&rfc3339_seconds(start.nominal_ms)), "Datetime"),
        );
        attributes.indexed_fields.insert(
            SCHEDULED_BY_ID.into(),
            json_payload(json_string(&self.record.schedule_id), "Keyword"),
        );
        let overlapping = self.resolve(start.overlap_policy) == Policy::AllowAll;
        let reuse = if start.manual {
            WorkflowIdReusePolicy::AllowDuplicate
        } else {
            WorkflowIdReusePolicy::RejectDuplicate
        };
        #[allow(deprecated)]
        Some(StartWorkflowExecutionRequest {
            namespace: self.record.namespace.clone(),
            workflow_id,
            workflow_type: action.workflow_type,
            task_queue: action.task_queue,
            input: action.input,
            workflow_execution_timeout: action.workflow_execution_timeout,
            workflow_run_timeout: action.workflow_run_timeout,
            workflow_task_timeout: action.workflow_task_timeout,
            identity: format!(
                "temporal-scheduler-{}-{}",
                self.record.namespace, self.record.schedule_id
            ),
            request_id: start.request_id.clone(),
            workflow_id_reuse_policy: reuse as i32,
            retry_policy: action.retry_policy,
            memo: action.memo,
            search_attributes: Some(attributes),
            header: action.header,
            last_completion_result: (!overlapping)
                .then(|| self.record.last_completion_result.clone())
                .flatten(),
            continued_failure: (!overlapping)
                .then(|| self.record.continued_failure.clone())
                .flatten(),
            user_metadata: action.user_metadata,
            priority: action.priority,
            ..Default::default()
        })
    }

    /// A start happened (or had already happened: same request id).
    pub fn start_succeeded(&mut self, request_id: &str, execution: WorkflowExecution, at_ms: i64) {
        let Some(pos) = self
            .record
            .starting
            .iter()
            .position(|s| s.request_id == request_id)
        else {
            return;
        };
        let start = self.record.starting.remove(pos);
        let tracked = self.resolve(start.overlap_policy) != Policy::AllowAll;
        let info = self.info_mut();
        info.action_count += 1;
        info.recent_actions.push(ScheduleActionResult {
            schedule_time: Some(time::timestamp(start.actual_ms)),
            actual_time: Some(time::timestamp(at_ms)),
            start_workflow_result: Some(execution.clone()),
            start_workflow_status: Status::Running as i32,
        });
        let excess = info.recent_actions.len().saturating_sub(RECENT_ACTIONS);
        info.recent_actions.drain(..excess);
        if tracked {
            info.running_workflows.push(execution);
        }
    }

    /// A start could not happen (e.g. the workflow id is taken); it is dropped.
    pub fn start_failed(&mut self, request_id: &str) {
        self.record.starting.retain(|s| s.request_id != request_id);
    }

    /// A workflow the schedule started has closed (its chain ended with `status`).
    /// Returns true when the schedule's record changed.
    pub fn workflow_closed(
        &mut self,
        workflow_id: &str,
        status: Status,
        result: Option<Payloads>,
        failure: Option<Failure>,
    ) -> bool {
        let info = self.info_mut();
        let before = info.running_workflows.len();
        info.running_workflows
            .retain(|w| w.workflow_id != workflow_id);
        let was_running = info.running_workflows.len() != before;
        let mut changed = was_running;
        for action in info.recent_actions.iter_mut() {
            let same = action
                .start_workflow_result
                .as_ref()
                .is_some_and(|w| w.workflow_id == workflow_id);
            if same && action.start_workflow_status != status as i32 {
                action.start_workflow_status = status as i32;
                changed = true;
            }
        }
        if !was_running {
            return changed;
        }
        let failed = matches!(status, Status::Failed | Status::TimedOut);
        if self.policies().pause_on_failure && failed && !self.state().paused {
            let notes = if status == Status::Failed {
                let message = failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                format!("paused due to workflow failure: {workflow_id}: {message}")
            } else {
                format!("paused due to workflow timeout: {workflow_id}")
            };
            let state = self.state_mut();
            state.paused = true;
            state.notes = notes;
            self.record.conflict_token += 1;
        }
        if result.is_some() {
            self.record.last_completion_result = result;
            self.record.continued_failure = None;
        } else if failure.is_some() {
            self.record.continued_failure = failure;
        }
        true
    }

    /// PatchSchedule: trigger, backfill, pause, unpause.
    pub fn patch(&mut self, patch: &SchedulePatch, now: i64) {
        if let Some(trigger) = &patch.trigger_immediately {
            let at = trigger
                .scheduled_time
                .as_ref()
                .map_or(now, time::timestamp_ms);
            self.add_start(at, at, trigger.overlap_policy, true);
        }
        for backfill in &patch.backfill_request {
            let mut b = *backfill;
            // The start time is inclusive.
            let start = b.start_time.as_ref().map_or(0, time::timestamp_ms) - 1;
            b.start_time = Some(time::timestamp(start));
            self.record.backfills.push(b);
        }
        if !patch.pause.is_empty() {
            let state = self.state_mut();
            state.paused = true;
            state.notes = patch.pause.clone();
            self.record.conflict_token += 1;
        }
        if !patch.unpause.is_empty() {
            let state = self.state_mut();
            state.paused = false;
            state.notes = patch.unpause.clone();
            self.record.conflict_token += 1;
        }
    }

    /// UpdateSchedule: replaces spec, action, policies and state (not info). A non-zero
    /// `conflict_token` must match the current one.
    pub fn update(
        &mut self,
        mut schedule: Schedule,
        search_attributes: Option<SearchAttributes>,
        conflict_token: Option<i64>,
        now: i64,
    ) -> Result<(), ScheduleError> {
        if let Some(token) = conflict_token
            && token != 0
            && token != self.record.conflict_token
        {
            return Err(ScheduleError::Conflict);
        }
        validate(&schedule)?;
        let spec = CompiledSpec::compile(&schedule.spec.clone().unwrap_or_default())
            .map_err(spec_error)?;
        schedule.spec = Some(spec.canonical().clone());
        resolve_policies(&mut schedule);
        self.record.schedule = Some(schedule);
        self.spec = Some(spec);
        if search_attributes.is_some() {
            self.record.search_attributes = search_attributes;
        }
        let info = self.info_mut();
        info.update_time = Some(time::timestamp(now));
        #[allow(deprecated)]
        info.invalid_schedule_error.clear();
        self.record.conflict_token += 1;
        self.record.last_processed_ms = self.record.last_processed_ms.max(now);
        Ok(())
    }

    /// The next `n` action times (from the last processed time, within remaining actions).
    pub fn future_action_times(&self, n: usize) -> Vec<i64> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        let state = self.state();
        let n = if state.limited_actions {
            n.min(state.remaining_actions.max(0) as usize)
        } else {
            n
        };
        let updated = self
            .info()
            .update_time
            .as_ref()
            .map_or(i64::MIN, time::timestamp_ms);
        let seed = self.seed();
        let mut out = Vec::with_capacity(n);
        let mut cursor = self.record.last_processed_ms;
        while out.len() < n {
            let Some(next) = spec.next(&seed, cursor) else {
                break;
            };
            cursor = next.actual_ms;
            if next.nominal_ms >= updated {
                out.push(next.actual_ms);
            }
        }
        out
    }

    /// Action times in `(start, end]` (ListScheduleMatchingTimes).
    pub fn matching_times(&self, start_ms: i64, end_ms: i64) -> Result<Vec<i64>, ScheduleError> {
        let spec = self.spec.as_ref().ok_or_else(|| {
            #[allow(deprecated)]
            let reason = self.info().invalid_schedule_error.clone();
            ScheduleError::InvalidArgument(format!("invalid schedule: {reason}"))
        })?;
        Ok(spec.times_between(&self.seed(), start_ms, end_ms, MAX_MATCHING_TIMES))
    }

    /// DescribeSchedule's info: the stored counters plus future times and buffer size.
    pub fn describe_info(&self) -> ScheduleInfo {
        let mut info = self.info().clone();
        info.future_action_times = self
            .future_action_times(FUTURE_ACTIONS)
            .into_iter()
            .map(time::timestamp)
            .collect();
        info.buffer_size = (self.record.buffered.len() + self.record.starting.len()) as i64;
        info
    }

    /// The conflict token as clients see it (8 bytes, big endian).
    pub fn conflict_token_bytes(&self) -> Vec<u8> {
        self.record.conflict_token.to_be_bytes().to_vec()
    }

    /// ListSchedules' entry.
    pub fn list_entry(&self) -> ScheduleListEntry {
        use crate::api::schedule::v1::schedule_action::Action;
        let schedule = self.record.schedule();
        let mut spec = schedule.spec.clone().unwrap_or_default();
        spec.timezone_data.clear();
        let state = self.state();
        let recent = &self.info().recent_actions;
        let workflow_type = match schedule.action.as_ref().and_then(|a| a.action.as_ref()) {
            Some(Action::StartWorkflow(s)) => s.workflow_type.clone(),
            None => None,
        };
        ScheduleListEntry {
            schedule_id: self.record.schedule_id.clone(),
            memo: Some(self.record.memo.clone().unwrap_or_default()),
            search_attributes: self.record.search_attributes.clone(),
            info: Some(ScheduleListInfo {
                spec: Some(spec),
                workflow_type,
                notes: state.notes,
                paused: state.paused,
                recent_actions: recent[recent.len().saturating_sub(LIST_RECENT_ACTIONS)..].to_vec(),
                future_action_times: self
                    .future_action_times(LIST_FUTURE_ACTIONS)
                    .into_iter()
                    .map(time::timestamp)
                    .collect(),
                ..Default::default()
            }),
        }
    }

    /// Workflow ids of the running workflows (to check on after a restart).
    pub fn running_workflows(&self) -> Vec<WorkflowExecution> {
        self.info().running_workflows.clone()
    }

    pub fn is_paused(&self) -> bool {
        self.state().paused
    }
}

impl ScheduleRecord {
    pub fn schedule(&self) -> &Schedule {
        static EMPTY: std::sync::OnceLock<Schedule> = std::sync::OnceLock::new();
        self.schedule
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Schedule::default))
    }
}
