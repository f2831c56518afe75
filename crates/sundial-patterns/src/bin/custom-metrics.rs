//! Custom metrics: the worker exports Prometheus metrics through the SDK's telemetry, and
//! the activity records business metrics of its own with the same meter: a counter of
//! executions by outcome and a schedule-to-start latency histogram labelled with the
//! workflow and activity types.
//!
//! The Python catalogue records these from an activity inbound interceptor. The Rust SDK
//! (1.1) has no activity interceptor and no `activity.metric_meter()`; the closest correct
//! approach is what this program does: start the SDK's Prometheus exporter, hand its meter to
//! the runtime (so the SDK's own worker metrics are exported too) and to the activities
//! struct, and record from a wrapper the activity calls around its body. Before exiting the
//! program scrapes its own endpoint and checks the numbers.
//!
//! ```sh
//! cargo run -p sundial-patterns --bin custom-metrics -- --metrics-port 9090
//! ```

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context, anyhow, ensure};
use sundial_patterns::{Pattern, run_pattern_with, with_worker_on};
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions,
    metrics::{
        CoreMeter, Counter, HistogramDuration, MetricKeyValue, MetricParameters, NewAttributes,
    },
    start_prometheus_metric_exporter,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{
    ActivityOptions, Runtime, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many workflows (one activity each) the program runs.
const RUNS: u64 = 3;

#[derive(Debug, Clone, clap::Args)]
struct MetricsArgs {
    /// Port of the worker's Prometheus endpoint (on 127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    metrics_port: u16,
}

/// The business metrics, created once from the exporter's meter.
struct ActivityMetrics {
    meter: Arc<dyn CoreMeter>,
    executions: Counter,
    schedule_to_start: HistogramDuration,
}

impl ActivityMetrics {
    fn new(meter: Arc<dyn CoreMeter>) -> Self {
        let executions = meter.counter(
            MetricParameters::builder()
                .name("activity_executions_total")
                .description("Total number of activity executions")
                .build(),
        );
        let schedule_to_start = meter.histogram_duration(
            MetricParameters::builder()
                .name("activity_schedule_to_start_latency")
                .description("Time between activity scheduling and start")
                .unit("duration")
                .build(),
        );
        ActivityMetrics {
            meter,
            executions,
            schedule_to_start,
        }
    }

    fn count(&self, status: &str) {
        let attrs = self
            .meter
            .new_attributes(NewAttributes::from([MetricKeyValue::new(
                "status",
                status.to_string(),
            )]));
        self.executions.add(1, &attrs);
    }

    /// What the catalogue's interceptor does, around `body`.
    async fn observe<T>(
        &self,
        ctx: &ActivityContext,
        body: impl std::future::Future<Output = Result<T, ActivityError>>,
    ) -> Result<T, ActivityError> {
        let info = ctx.info();
        let latency = match (info.started_time, info.current_attempt_scheduled_time) {
            (Some(started), Some(scheduled)) => {
                started.duration_since(scheduled).unwrap_or(Duration::ZERO)
            }
            _ => Duration::ZERO,
        };
        let attrs = self.meter.new_attributes(NewAttributes::from([
            MetricKeyValue::new(
                "workflow_type",
                info.workflow_type.clone().unwrap_or_default(),
            ),
            MetricKeyValue::new("activity_type", info.activity_type.clone()),
        ]));
        self.schedule_to_start.record(latency, &attrs);
        self.count("started");
        let result = body.await;
        self.count(if result.is_ok() {
            "completed"
        } else {
            "failed"
        });
        result
    }
}

struct MetricsActivities {
    metrics: ActivityMetrics,
}

#[activities]
impl MetricsActivities {
    #[activity]
    async fn my_activity(
        self: Arc<Self>,
        ctx: ActivityContext,
        name: String,
    ) -> Result<String, ActivityError> {
        self.metrics
            .observe(&ctx, async { Ok(format!("Hello, {name}!")) })
            .await
    }
}

#[workflow]
#[derive(Default)]
struct MyWorkflow;

#[workflow_methods]
impl MyWorkflow {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        Ok(ctx
            .execute_activity(
                MetricsActivities::my_activity,
                name,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?)
    }
}

fn main() -> ExitCode {
    run_pattern_with("custom-metrics", run)
}

/// `GET /metrics` from the worker's own endpoint.
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    Ok(text)
}

/// Sum of the samples of `name` whose label set contains every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let ok = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .fold(0.0, |a, b| a + b)
}

async fn run(p: Pattern, args: MetricsArgs) -> anyhow::Result<()> {
    let exporter = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                args.metrics_port,
            )))
            .build(),
    )
    .map_err(|e| anyhow!("starting the Prometheus exporter: {e}"))?;
    let addr = exporter.bound_addr;
    println!("worker metrics at http://{addr}/metrics");
    let meter: Arc<dyn CoreMeter> = exporter.meter.clone();
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .telemetry_options(TelemetryOptions::builder().metrics(meter.clone()).build())
            .build()
            .map_err(|e| anyhow!("runtime options: {e}"))?,
    )
    .map_err(|e| anyhow!("creating the SDK runtime: {e}"))?;
    let options = WorkerOptions::new(p.task_queue.clone())
        .register_workflow::<MyWorkflow>()?
        .register_activities(MetricsActivities {
            metrics: ActivityMetrics::new(meter),
        })
        .graceful_shutdown_period(Duration::from_millis(500))
        .build();
    let client = &p.client;
    let started = SystemTime::now();
    with_worker_on(&runtime, client, options, async {
        for i in 0..RUNS {
            let id = p.workflow_id(&format!("run{i}"));
            let result = p
                .start_and_wait(MyWorkflow::run, format!("metrics-{i}"), &id)
                .await?;
            ensure!(
                result == format!("Hello, metrics-{i}!"),
                "unexpected result {result:?}"
            );
        }
        Ok(())
    })
    .await?;
    println!(
        "{RUNS} workflows in {:?}",
        started.elapsed().unwrap_or_default()
    );

    let text = scrape(addr).await?;
    let completed = sample(
        &text,
        "activity_executions_total",
        &[("status", "completed")],
    );
    let begun = sample(&text, "activity_executions_total", &[("status", "started")]);
    let failed = sample(&text, "activity_executions_total", &[("status", "failed")]);
    let latencies = sample(
        &text,
        "activity_schedule_to_start_latency_count",
        &[("workflow_type", "MyWorkflow")],
    );
    println!(
        "scraped: activity_executions_total started={begun} completed={completed} failed={failed}, \
         activity_schedule_to_start_latency_count={latencies}"
    );
    let runs = RUNS as f64;
    ensure!(
        begun == runs && completed == runs && failed == 0.0,
        "unexpected execution counts in:\n{text}"
    );
    ensure!(
        latencies == runs,
        "expected {RUNS} latency samples in:\n{text}"
    );
    exporter.abort_handle.abort();
    Ok(())
}
