//! Temporal's field limits on what clients and workers send: lengths of ids and names, sizes
//! of search attributes and memos, durations, enum values. Checked once where every path of a
//! kind of input meets: [`crate::start::validate_start`] for every start (RPC,
//! signal-with-start, update-with-start, schedules, children, continue-as-new), [`command`]
//! for every command of a completed workflow task, [`signal_name`] for every signal.
//!
//! Limits and messages are the reference server's defaults (`limit.maxIDLength`,
//! `frontend.searchAttributesNumberOfKeysLimit`, `frontend.searchAttributesSizeOfValueLimit`,
//! `frontend.searchAttributesTotalSizeLimit`, `limit.memoSize.error`).

use crate::api::{
    command::v1::{Command, command::Attributes as Cmd},
    common::v1::{Memo, RetryPolicy, SearchAttributes},
    enums::v1::{
        ParentClosePolicy, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
        WorkflowTaskFailedCause as Cause,
    },
    taskqueue::v1::TaskQueue,
};
use crate::commands::Rejection;
use crate::time;
use prost::Message;
use prost_wkt_types::Duration;

/// Longest id or name: workflow id and type, task queue, request id, activity id and type,
/// timer id, signal, update and query names, marker name, namespace, identity
/// (`limit.maxIDLength`).
pub const MAX_ID_LENGTH: usize = 1000;
/// Most search attributes on one start or upsert.
pub const MAX_SEARCH_ATTRIBUTES: usize = 100;
/// Largest value of one search attribute, in bytes.
pub const MAX_SEARCH_ATTRIBUTE_VALUE: usize = 2 * 1024;
/// Largest encoded set of search attributes, in bytes.
pub const MAX_SEARCH_ATTRIBUTES_TOTAL: usize = 40 * 1024;
/// Largest encoded memo, in bytes.
pub const MAX_MEMO_SIZE: usize = 2 * 1024 * 1024;

/// Search attribute count and sizes, with the reference server's messages.
pub fn search_attributes(attributes: Option<&SearchAttributes>) -> Result<(), String> {
    let Some(attributes) = attributes else {
        return Ok(());
    };
    let count = attributes.indexed_fields.len();
    if count > MAX_SEARCH_ATTRIBUTES {
        return Err(format!(
            "number of search attributes {count} exceeds limit {MAX_SEARCH_ATTRIBUTES}"
        ));
    }
    for (name, payload) in &attributes.indexed_fields {
        if payload.data.len() > MAX_SEARCH_ATTRIBUTE_VALUE {
            return Err(format!(
                "search attribute {name} value size {} exceeds size limit {MAX_SEARCH_ATTRIBUTE_VALUE}",
                payload.data.len()
            ));
        }
    }
    let total = attributes.encoded_len();
    if total > MAX_SEARCH_ATTRIBUTES_TOTAL {
        return Err(format!(
            "total size of search attributes {total} exceeds size limit {MAX_SEARCH_ATTRIBUTES_TOTAL}"
        ));
    }
    Ok(())
}

/// The memo's encoded size.
pub fn memo(memo: Option<&Memo>) -> Result<(), String> {
    match memo {
        Some(m) if m.encoded_len() > MAX_MEMO_SIZE => Err("Memo size exceeds limit.".into()),
        _ => Ok(()),
    }
}

/// `what` must be at most [`MAX_ID_LENGTH`] bytes long.
pub fn id_length(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_ID_LENGTH {
        return Err(format!(
            "{what} exceeds length limit. Length={} Limit={MAX_ID_LENGTH}",
            value.len()
        ));
    }
    Ok(())
}

/// A signal's name (every signal: the RPC, signal-with-start, external signals).
pub fn signal_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_ID_LENGTH {
        return Err("SignalName length exceeds limit.".into());
    }
    Ok(())
}

/// A duration field named `what`: refused when negative or with mismatched signs (durations
/// past 100 years are capped where they are converted).
pub fn duration(what: &str, d: Option<&Duration>) -> Result<(), String> {
    match time::invalid_duration(d) {
        Some(cause) => Err(format!("An invalid {what} is set. cause: {cause}")),
        None => Ok(()),
    }
}

/// The retry policy's intervals.
pub fn retry_policy(policy: Option<&RetryPolicy>) -> Result<(), String> {
    let Some(p) = policy else { return Ok(()) };
    duration(
        "InitialInterval on retry policy",
        p.initial_interval.as_ref(),
    )?;
    duration(
        "MaximumInterval on retry policy",
        p.maximum_interval.as_ref(),
    )?;
    if !p.backoff_coefficient.is_finite() {
        return Err("BackoffCoefficient cannot be less than 1 on retry policy.".into());
    }
    Ok(())
}

fn task_queue(queue: Option<&TaskQueue>) -> Result<(), String> {
    match queue {
        Some(q) if q.name.len() > MAX_ID_LENGTH || q.normal_name.len() > MAX_ID_LENGTH => {
            Err("TaskQueue length exceeds limit.".into())
        }
        _ => Ok(()),
    }
}

/// `value` must be a known variant of the enum `E` (0, unspecified, included).
pub fn known_enum<E: TryFrom<i32>>(what: &str, value: i32) -> Result<(), String> {
    match E::try_from(value) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("Invalid {what}: unknown value {value}.")),
    }
}

/// The id-reuse and id-conflict policies of a start.
pub fn id_policies(reuse: i32, conflict: i32) -> Result<(), String> {
    known_enum::<WorkflowIdReusePolicy>("WorkflowIdReusePolicy", reuse)?;
    known_enum::<WorkflowIdConflictPolicy>("WorkflowIdConflictPolicy", conflict)
}

/// The limits every command is held to before it is applied; a violation fails the
/// workflow task with the command's cause.
#[allow(deprecated)] // child/external namespaces: deprecated in the API, still sent
pub(crate) fn command(command: &Command) -> Result<(), Rejection> {
    let check = |cause: Cause, result: Result<(), String>| {
        result.map_err(|message| Rejection::new(cause, message))
    };
    let Some(attributes) = &command.attributes else {
        return Ok(());
    };
    match attributes {
        Cmd::ScheduleActivityTaskCommandAttributes(a) => {
            check(Cause::BadScheduleActivityAttributes, {
                (|| {
                    id_length("ActivityId on ScheduleActivityTaskCommand", &a.activity_id)?;
                    id_length(
                        "ActivityType on ScheduleActivityTaskCommand",
                        a.activity_type.as_ref().map_or("", |t| t.name.as_str()),
                    )?;
                    task_queue(a.task_queue.as_ref())?;
                    // Negative timeouts are refused where they are read (commands.rs).
                    retry_policy(a.retry_policy.as_ref())
                })()
            })
        }
        Cmd::StartTimerCommandAttributes(a) => check(
            Cause::BadStartTimerAttributes,
            id_length("TimerId on StartTimerCommand", &a.timer_id),
        ),
        Cmd::CancelTimerCommandAttributes(a) => check(
            Cause::BadCancelTimerAttributes,
            id_length("TimerId on CancelTimerCommand", &a.timer_id),
        ),
        Cmd::RecordMarkerCommandAttributes(a) => check(
            Cause::BadRecordMarkerAttributes,
            id_length("MarkerName on RecordMarkerCommand", &a.marker_name),
        ),
        Cmd::UpsertWorkflowSearchAttributesCommandAttributes(a) => check(
            Cause::BadSearchAttributes,
            search_attributes(a.search_attributes.as_ref()),
        ),
        Cmd::ModifyWorkflowPropertiesCommandAttributes(a) => check(
            Cause::BadModifyWorkflowPropertiesAttributes,
            memo(a.upserted_memo.as_ref()),
        ),
        Cmd::ContinueAsNewWorkflowExecutionCommandAttributes(a) => {
            check(Cause::BadContinueAsNewAttributes, {
                (|| {
                    id_length(
                        "WorkflowType on ContinueAsNewWorkflowExecutionCommand",
                        a.workflow_type.as_ref().map_or("", |t| t.name.as_str()),
                    )?;
                    task_queue(a.task_queue.as_ref())?;
                    duration("WorkflowRunTimeout", a.workflow_run_timeout.as_ref())?;
                    duration("WorkflowTaskTimeout", a.workflow_task_timeout.as_ref())?;
                    duration("BackoffStartInterval", a.backoff_start_interval.as_ref())?;
                    retry_policy(a.retry_policy.as_ref())?;
                    memo(a.memo.as_ref())?;
                    search_attributes(a.search_attributes.as_ref())
                })()
            })
        }
        Cmd::StartChildWorkflowExecutionCommandAttributes(a) => {
            check(Cause::BadStartChildExecutionAttributes, {
                (|| {
                    id_length(
                        "Namespace on StartChildWorkflowExecutionCommand",
                        &a.namespace,
                    )?;
                    id_length(
                        "WorkflowId on StartChildWorkflowExecutionCommand",
                        &a.workflow_id,
                    )?;
                    id_length(
                        "WorkflowType on StartChildWorkflowExecutionCommand",
                        a.workflow_type.as_ref().map_or("", |t| t.name.as_str()),
                    )?;
                    task_queue(a.task_queue.as_ref())?;
                    duration(
                        "WorkflowExecutionTimeout",
                        a.workflow_execution_timeout.as_ref(),
                    )?;
                    duration("WorkflowRunTimeout", a.workflow_run_timeout.as_ref())?;
                    duration("WorkflowTaskTimeout", a.workflow_task_timeout.as_ref())?;
                    retry_policy(a.retry_policy.as_ref())?;
                    known_enum::<ParentClosePolicy>("ParentClosePolicy", a.parent_close_policy)?;
                    known_enum::<WorkflowIdReusePolicy>(
                        "WorkflowIdReusePolicy",
                        a.workflow_id_reuse_policy,
                    )?;
                    memo(a.memo.as_ref())?;
                    search_attributes(a.search_attributes.as_ref())
                })()
            })
        }
        Cmd::SignalExternalWorkflowExecutionCommandAttributes(a) => {
            check(Cause::BadSignalWorkflowExecutionAttributes, {
                (|| {
                    id_length(
                        "Namespace on SignalExternalWorkflowExecutionCommand",
                        &a.namespace,
                    )?;
                    id_length(
                        "WorkflowId on SignalExternalWorkflowExecutionCommand",
                        a.execution.as_ref().map_or("", |e| e.workflow_id.as_str()),
                    )?;
                    signal_name(&a.signal_name)
                })()
            })
        }
        Cmd::RequestCancelExternalWorkflowExecutionCommandAttributes(a) => check(
            Cause::BadRequestCancelExternalWorkflowExecutionAttributes,
            id_length(
                "Namespace on RequestCancelExternalWorkflowExecutionCommand",
                &a.namespace,
            )
            .and_then(|()| {
                id_length(
                    "WorkflowId on RequestCancelExternalWorkflowExecutionCommand",
                    &a.workflow_id,
                )
            }),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::v1::Payload;

    fn payload(size: usize) -> Payload {
        Payload {
            metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
            data: vec![b'x'; size],
            ..Default::default()
        }
    }

    #[test]
    fn search_attribute_limits_are_temporals() {
        let mut sa = SearchAttributes::default();
        sa.indexed_fields.insert("A".into(), payload(2048));
        assert!(search_attributes(Some(&sa)).is_ok());
        sa.indexed_fields.insert("B".into(), payload(2049));
        assert_eq!(
            search_attributes(Some(&sa)).unwrap_err(),
            "search attribute B value size 2049 exceeds size limit 2048"
        );
        let mut sa = SearchAttributes::default();
        for i in 0..30 {
            sa.indexed_fields.insert(format!("K{i}"), payload(2000));
        }
        assert!(
            search_attributes(Some(&sa))
                .unwrap_err()
                .starts_with("total size of search attributes")
        );
        let mut sa = SearchAttributes::default();
        for i in 0..101 {
            sa.indexed_fields.insert(format!("K{i}"), payload(1));
        }
        assert_eq!(
            search_attributes(Some(&sa)).unwrap_err(),
            "number of search attributes 101 exceeds limit 100"
        );
    }

    #[test]
    fn ids_memos_durations_and_enums() {
        assert!(id_length("WorkflowId", &"w".repeat(1000)).is_ok());
        assert!(id_length("WorkflowId", &"w".repeat(1001)).is_err());
        let mut m = Memo::default();
        m.fields.insert("big".into(), payload(MAX_MEMO_SIZE));
        assert_eq!(memo(Some(&m)).unwrap_err(), "Memo size exceeds limit.");
        assert!(
            duration(
                "StartToFireTimeout",
                Some(&Duration {
                    seconds: 5,
                    nanos: -1
                })
            )
            .is_err()
        );
        assert!(known_enum::<ParentClosePolicy>("ParentClosePolicy", 3).is_ok());
        assert!(known_enum::<ParentClosePolicy>("ParentClosePolicy", 77).is_err());
        assert!(id_policies(0, 0).is_ok());
        assert!(id_policies(42, 0).is_err());
        assert!(id_policies(0, -1).is_err());
    }
}
