//! A property the coverage-guided fuzz target `workflow_commands` (`fuzz/`) checks, kept here
//! so the same check also runs on generated inputs in the ordinary test suite.

use crate::api::{
    common::v1::WorkflowType,
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{RespondWorkflowTaskCompletedRequest, StartWorkflowExecutionRequest},
};
use crate::{Poller, StartParams, Transition, WorkflowTaskRef, new_execution};
use prost::Message;

/// The start of the workflow the properties (and the engine's tests) drive: `Flow` with id
/// `wf` on queue `q` in `default`.
pub(crate) fn start_request() -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: "wf".into(),
        workflow_type: Some(WorkflowType {
            name: "Flow".into(),
        }),
        task_queue: Some(TaskQueue {
            name: "q".into(),
            ..Default::default()
        }),
        request_id: "req".into(),
        ..Default::default()
    }
}

/// Command validation: a RespondWorkflowTaskCompleted decoded from any bytes, applied to a
/// running workflow's started task. The engine accepts it, rejects the task with a cause, or
/// refuses it with an error; it never panics, and whatever it commits is consistent: event ids
/// stay dense and the run's next event id follows the last event written.
pub fn any_completion(data: &[u8]) {
    let Ok(completion) = RespondWorkflowTaskCompletedRequest::decode(data) else {
        return;
    };
    let start = start_request();
    let (mut state, history, _) = new_execution(StartParams {
        request: &start,
        run_id: "run".into(),
        now: 1_700_000_000_000,
        signal: None,
        continuation: None,
        parent: None,
    })
    .expect("a valid start");
    let mut next_id = history.len() as i64 + 1;
    let Some(wt) = state.workflow_task.as_ref().map(|wt| WorkflowTaskRef {
        scheduled_event_id: wt.scheduled_event_id,
        seq: wt.seq,
    }) else {
        return;
    };
    let poller = Poller {
        identity: "fuzz".into(),
        request_id: "poll".into(),
        build_id: String::new(),
    };
    let mut t = Transition::new(&mut state, 1_700_000_000_010);
    t.start_workflow_task(wt, &poller)
        .expect("the first task starts");
    let result = t.complete_workflow_task(wt, &completion);
    let events = std::mem::take(&mut t.events);
    if result.is_ok() {
        for event in &events {
            assert_eq!(event.event_id, next_id, "event ids must stay dense");
            next_id += 1;
        }
        assert_eq!(state.next_event_id, next_id);
    }
}
