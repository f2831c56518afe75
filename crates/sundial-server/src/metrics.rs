//! The server's own Prometheus metrics.
//!
//! Recording is cheap on the hot path: every series a request touches is resolved once (per
//! RPC and status code, per workflow outcome, per task kind) and then costs an atomic add.
//! Gauges that describe in-memory structures (task queue backlog, waiting long polls, pending
//! timers) are not maintained on every change; they are read from those structures when
//! `/metrics` is scraped.
//!
//! Persistence figures come from the store's writer thread through
//! [`sundial_store::CommitObserver`], called after the group's callers were answered, so
//! observing never delays a commit.

use crate::matching::TaskKind;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;
use sundial_engine::api::enums::v1::WorkflowExecutionStatus;
use sundial_engine::api::workflowservice::v1::{
    PollActivityTaskQueueResponse, PollWorkflowTaskQueueResponse,
};
use sundial_store::{CommitObserver, WriteBatch};

/// gRPC status codes 0 (OK) to 16 (Unauthenticated).
const STATUS_CODES: usize = 17;
const STATUS_NAMES: [&str; STATUS_CODES] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Latency buckets in seconds, from 1 ms to a long poll's minute.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Closed statuses counted, and their label values.
const CLOSED: [(WorkflowExecutionStatus, &str); 6] = [
    (WorkflowExecutionStatus::Completed, "completed"),
    (WorkflowExecutionStatus::Failed, "failed"),
    (WorkflowExecutionStatus::Canceled, "canceled"),
    (WorkflowExecutionStatus::Terminated, "terminated"),
    (WorkflowExecutionStatus::TimedOut, "timed_out"),
    (WorkflowExecutionStatus::ContinuedAsNew, "continued_as_new"),
];

fn kind_label(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Workflow => "workflow",
        TaskKind::Activity => "activity",
        TaskKind::Nexus => "nexus",
    }
}

/// Gauges read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// (namespace, kind, tasks waiting, pollers waiting), one entry per task queue.
    pub queues: Vec<(String, TaskKind, usize, usize)>,
    pub timers_pending: usize,
    /// Runs held in memory (the run cache).
    pub cached_runs: usize,
}

type SnapshotFn = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// Every metric the server exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    rpc_index: HashMap<&'static str, usize>,
    rpc_names: Vec<&'static str>,
    /// Per RPC and status code: the request counter and latency histogram, resolved on first
    /// use.
    rpc_cells: Vec<[OnceLock<(IntCounter, Histogram)>; STATUS_CODES]>,
    requests: IntCounterVec,
    latency: HistogramVec,
    workflows_started: IntCounter,
    workflows_closed: Vec<(i32, IntCounter)>,
    schedule_to_start: [Histogram; 2],
    backlog: IntGaugeVec,
    long_polls: IntGaugeVec,
    commit_latency: Histogram,
    commit_batches: Histogram,
    commit_failures: IntCounter,
    timers_pending: IntGauge,
    cached_runs: IntGauge,
    snapshot: OnceLock<SnapshotFn>,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "sundial_rpc_requests_total",
                "gRPC requests answered, per RPC and status code",
            ),
            &["rpc", "status"],
        )?;
        let latency = HistogramVec::new(
            histogram(
                "sundial_rpc_latency_seconds",
                "Time from request to response headers, per RPC and status code",
                LATENCY_BUCKETS,
            ),
            &["rpc", "status"],
        )?;
        let workflows_started =
            IntCounter::new("sundial_workflows_started_total", "Workflow runs started")?;
        let closed = IntCounterVec::new(
            Opts::new(
                "sundial_workflows_closed_total",
                "Workflow runs closed, per outcome",
            ),
            &["status"],
        )?;
        let dispatch = HistogramVec::new(
            histogram(
                "sundial_task_schedule_to_start_seconds",
                "Time from a task being scheduled to a poller taking it, per task kind",
                LATENCY_BUCKETS,
            ),
            &["kind"],
        )?;
        let backlog = IntGaugeVec::new(
            Opts::new(
                "sundial_task_queue_backlog",
                "Tasks waiting for a poller, per namespace and task kind",
            ),
            &["namespace", "kind"],
        )?;
        let long_polls = IntGaugeVec::new(
            Opts::new(
                "sundial_long_polls_waiting",
                "Task queue long polls waiting, per task kind",
            ),
            &["kind"],
        )?;
        let commit_latency = Histogram::with_opts(histogram(
            "sundial_persistence_commit_seconds",
            "Duration of one group commit (transaction and fsync)",
            COMMIT_BUCKETS,
        ))?;
        let commit_batches = Histogram::with_opts(histogram(
            "sundial_persistence_commit_batch_size",
            "Transitions written by one group commit",
            BATCH_BUCKETS,
        ))?;
        let commit_failures = IntCounter::new(
            "sundial_persistence_commit_failures_total",
            "Group commits that failed",
        )?;
        let timers_pending = IntGauge::new(
            "sundial_timers_pending",
            "Deadlines waiting in the timer loop",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(workflows_started.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(dispatch.clone()))?;
        registry.register(Box::new(backlog.clone()))?;
        registry.register(Box::new(long_polls.clone()))?;
        registry.register(Box::new(commit_latency.clone()))?;
        registry.register(Box::new(commit_batches.clone()))?;
        registry.register(Box::new(commit_failures.clone()))?;
        registry.register(Box::new(timers_pending.clone()))?;
        let cached_runs = IntGauge::new(
            "sundial_cached_runs",
            "Runs held in memory (running and recently closed); idle ones beyond the cache size are evicted",
        )?;
        registry.register(Box::new(cached_runs.clone()))?;
        let rpc_names: Vec<&'static str> = sundial_proto::METHODS.iter().map(|m| m.name).collect();
        let rpc_index = sundial_proto::METHODS
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path, i))
            .collect();
        let rpc_cells = rpc_names
            .iter()
            .map(|_| std::array::from_fn(|_| OnceLock::new()))
            .collect();
        let workflows_closed = CLOSED
            .iter()
            .map(|(status, label)| (*status as i32, closed.with_label_values(&[*label])))
            .collect();
        Ok(Metrics {
            registry,
            rpc_index,
            rpc_names,
            rpc_cells,
            requests,
            latency,
            workflows_started,
            workflows_closed,
            schedule_to_start: [
                dispatch.with_label_values(&[kind_label(TaskKind::Workflow)]),
                dispatch.with_label_values(&[kind_label(TaskKind::Activity)]),
            ],
            backlog,
            long_polls,
            commit_latency,
            commit_batches,
            commit_failures,
            timers_pending,
            cached_runs,
            snapshot: OnceLock::new(),
        })
    }

    /// Installs the function that reads queue and timer gauges at scrape time (once).
    pub fn set_snapshot(&self, f: impl Fn() -> Snapshot + Send + Sync + 'static) {
        let _ = self.snapshot.set(Box::new(f));
    }

    /// The index of an RPC path, for [`Metrics::rpc_done`]; `None` for unknown paths.
    pub fn rpc_index(&self, path: &str) -> Option<usize> {
        self.rpc_index.get(path).copied()
    }

    /// Records one answered request.
    pub fn rpc_done(&self, rpc: usize, status: i32, elapsed: Duration) {
        let Some(cells) = self.rpc_cells.get(rpc) else {
            return;
        };
        let code = usize::try_from(status)
            .ok()
            .filter(|c| *c < STATUS_CODES)
            .unwrap_or(2);
        let (count, latency) = cells[code].get_or_init(|| {
            let labels = [self.rpc_names[rpc], STATUS_NAMES[code]];
            (
                self.requests.with_label_values(&labels),
                self.latency.with_label_values(&labels),
            )
        });
        count.inc();
        latency.observe(elapsed.as_secs_f64());
    }

    /// Records a workflow task handed to a poller ([`Metrics::task_started`]).
    pub fn workflow_task_started(&self, task: &PollWorkflowTaskQueueResponse) {
        self.task_started(
            TaskKind::Workflow,
            task.scheduled_time.as_ref(),
            task.started_time.as_ref(),
        );
    }

    /// Records an activity task handed to a poller, or eagerly to the worker that scheduled
    /// it ([`Metrics::task_started`]).
    pub fn activity_task_started(&self, task: &PollActivityTaskQueueResponse) {
        self.task_started(
            TaskKind::Activity,
            task.current_attempt_scheduled_time.as_ref(),
            task.started_time.as_ref(),
        );
    }

    /// Records a task handed to a poller, from the times in its poll response (an empty
    /// response has neither and records nothing).
    pub fn task_started(
        &self,
        kind: TaskKind,
        scheduled: Option<&prost_wkt_types::Timestamp>,
        started: Option<&prost_wkt_types::Timestamp>,
    ) {
        if let (Some(scheduled), Some(started)) = (scheduled, started) {
            let ms = sundial_engine::time::timestamp_ms(started)
                - sundial_engine::time::timestamp_ms(scheduled);
            self.task_dispatched(kind, Duration::from_millis(ms.max(0) as u64));
        }
    }

    /// Records a task handed to a poller `elapsed` after it was scheduled.
    pub fn task_dispatched(&self, kind: TaskKind, elapsed: Duration) {
        let i = match kind {
            TaskKind::Workflow => 0,
            TaskKind::Activity => 1,
            TaskKind::Nexus => return,
        };
        self.schedule_to_start[i].observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every metric, gauges refreshed first.
    pub fn render(&self) -> Vec<u8> {
        if let Some(snapshot) = self.snapshot.get() {
            self.apply(&snapshot());
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    fn apply(&self, snapshot: &Snapshot) {
        let mut backlog: HashMap<(&str, &str), i64> = HashMap::new();
        let mut polls: HashMap<&str, i64> = HashMap::new();
        for kind in [TaskKind::Workflow, TaskKind::Activity] {
            polls.insert(kind_label(kind), 0);
        }
        for (namespace, kind, tasks, pollers) in &snapshot.queues {
            *backlog.entry((namespace, kind_label(*kind))).or_default() += *tasks as i64;
            *polls.entry(kind_label(*kind)).or_default() += *pollers as i64;
        }
        self.backlog.reset();
        for ((namespace, kind), n) in backlog {
            self.backlog.with_label_values(&[namespace, kind]).set(n);
        }
        for (kind, n) in polls {
            self.long_polls.with_label_values(&[kind]).set(n);
        }
        self.timers_pending.set(snapshot.timers_pending as i64);
        self.cached_runs.set(snapshot.cached_runs as i64);
    }
}

impl CommitObserver for Metrics {
    fn group_committed(
        &self,
        batches: &mut dyn Iterator<Item = &WriteBatch>,
        elapsed: Duration,
        ok: bool,
    ) {
        if !ok {
            self.commit_failures.inc();
            return;
        }
        self.commit_latency.observe(elapsed.as_secs_f64());
        let mut count = 0usize;
        for batch in batches {
            count += 1;
            // Event 1 of a run is its WorkflowExecutionStarted, written once, with the start.
            let started = batch.events.iter().filter(|e| e.event_id == 1).count();
            self.workflows_started.inc_by(started as u64);
            // A run's visibility row gets a close time in the one commit that closes it.
            for row in batch
                .visibility
                .iter()
                .filter(|v| v.close_time_ms.is_some())
            {
                if let Some((_, counter)) =
                    self.workflows_closed.iter().find(|(s, _)| *s == row.status)
                {
                    counter.inc();
                }
            }
        }
        self.commit_batches.observe(count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_store::{EventRow, VisibilityRow};

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn rpc_counts_and_latency_per_status() {
        let m = Metrics::new().unwrap();
        let i = m
            .rpc_index("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
            .unwrap();
        m.rpc_done(i, 0, Duration::from_millis(3));
        m.rpc_done(i, 0, Duration::from_millis(3));
        m.rpc_done(i, 6, Duration::from_millis(1));
        m.rpc_done(i, 99, Duration::from_millis(1));
        let t = text(&m);
        assert!(
            t.contains(r#"sundial_rpc_requests_total{rpc="StartWorkflowExecution",status="OK"} 2"#),
            "{t}"
        );
        assert!(t.contains(
            r#"sundial_rpc_requests_total{rpc="StartWorkflowExecution",status="AlreadyExists"} 1"#
        ));
        assert!(t.contains(
            r#"sundial_rpc_requests_total{rpc="StartWorkflowExecution",status="Unknown"} 1"#
        ));
        assert!(t.contains(
            r#"sundial_rpc_latency_seconds_count{rpc="StartWorkflowExecution",status="OK"} 2"#
        ));
        assert_eq!(m.rpc_index("/nope"), None);
    }

    #[test]
    fn commits_count_workflow_starts_and_closes() {
        let m = Metrics::new().unwrap();
        let start = WriteBatch {
            events: vec![
                EventRow {
                    run_id: "r".into(),
                    event_id: 1,
                    data: vec![],
                },
                EventRow {
                    run_id: "r".into(),
                    event_id: 2,
                    data: vec![],
                },
            ],
            ..Default::default()
        };
        let close = WriteBatch {
            visibility: vec![VisibilityRow {
                status: WorkflowExecutionStatus::Failed as i32,
                close_time_ms: Some(5),
                ..Default::default()
            }],
            ..Default::default()
        };
        m.group_committed(
            &mut [&start, &close].into_iter(),
            Duration::from_millis(2),
            true,
        );
        m.group_committed(&mut std::iter::empty(), Duration::from_millis(2), false);
        let t = text(&m);
        assert!(t.contains("sundial_workflows_started_total 1"), "{t}");
        assert!(t.contains(r#"sundial_workflows_closed_total{status="failed"} 1"#));
        assert!(t.contains(r#"sundial_workflows_closed_total{status="completed"} 0"#));
        assert!(t.contains("sundial_persistence_commit_batch_size_sum 2"));
        assert!(t.contains("sundial_persistence_commit_seconds_count 1"));
        assert!(t.contains("sundial_persistence_commit_failures_total 1"));
    }

    #[test]
    fn gauges_come_from_the_snapshot() {
        let m = Metrics::new().unwrap();
        m.set_snapshot(|| Snapshot {
            queues: vec![
                ("default".into(), TaskKind::Activity, 3, 0),
                ("default".into(), TaskKind::Activity, 1, 2),
                ("default".into(), TaskKind::Workflow, 0, 1),
            ],
            timers_pending: 7,
            cached_runs: 5,
        });
        m.task_dispatched(TaskKind::Activity, Duration::from_millis(5));
        let t = text(&m);
        assert!(
            t.contains(r#"sundial_task_queue_backlog{kind="activity",namespace="default"} 4"#),
            "{t}"
        );
        assert!(t.contains(r#"sundial_long_polls_waiting{kind="activity"} 2"#));
        assert!(t.contains(r#"sundial_long_polls_waiting{kind="workflow"} 1"#));
        assert!(t.contains("sundial_timers_pending 7"));
        assert!(t.contains("sundial_cached_runs 5"));
        assert!(t.contains(r#"sundial_task_schedule_to_start_seconds_count{kind="activity"} 1"#));
    }
}
