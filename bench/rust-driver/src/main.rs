//! Throughput driver for Sundial's benchmark, written with the official Temporal Rust SDK
//! (`temporalio-sdk` 1.1). It runs its own worker in-process and measures scenario 1 of
//! issue 10: N workflows, each running `--activities` activities in sequence (default one),
//! with `--concurrency` workflows in flight. It prints one JSON line with the throughput,
//! the latency percentiles of whole workflows, its own CPU seconds and, when `--server-pid`
//! is given, the server's CPU seconds and peak resident memory during the measured run.
//!
//! `--scenario sleepers` runs scenario `sleepers` of issue 17 instead (see `sleepers.rs`):
//! W workflows asleep on one timer each, either left asleep (`--mode arm`) or fired and
//! completed (`--mode fire`).
//!
//! Works against any Temporal-compatible address (Sundial or Temporal's dev server).

mod sleepers;

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use futures::{StreamExt, stream};
use serde_json::json;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowGetResultOptions,
    WorkflowStartOptions,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// N workflows of `--activities` activities each, `--concurrency` in flight.
    Throughput,
    /// N workflows asleep on one timer each (issue 17); see `--mode`.
    Sleepers,
}

#[derive(Parser, Debug)]
#[command(about = "Temporal Rust SDK benchmark driver (throughput, sleepers)")]
struct Args {
    #[arg(long, value_enum, default_value_t = Scenario::Throughput)]
    scenario: Scenario,
    /// Sleepers: `arm` starts N on a long timer, waits until all are armed, reads the
    /// server's memory and exits leaving them asleep; `fire` starts N on a short timer and
    /// waits until all completed.
    #[arg(long, value_enum, default_value_t = sleepers::Mode::Arm)]
    mode: sleepers::Mode,
    /// Sleepers: timer length in seconds (default: 86400 with `--mode arm`; with `--mode fire`
    /// 1.5 times the arming time estimated from a probe batch, plus 10 s).
    #[arg(long)]
    timer_s: Option<f64>,
    /// Sleepers, `arm`: seconds between all armed and the server memory reading.
    #[arg(long, default_value_t = 2.0)]
    rss_wait_s: f64,
    /// Sleepers, `fire`: workflows whose histories give the server fire delay.
    #[arg(long, default_value_t = 200)]
    history_sample: usize,
    /// Sleepers: the last-started workflows whose histories must show TimerStarted.
    #[arg(long, default_value_t = 50)]
    arm_check: usize,
    /// Server address, host:port or a URL.
    #[arg(long, default_value = "127.0.0.1:7233")]
    address: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Workflows to run in the measured phase (sleepers: workflows asleep at once).
    #[arg(long, short = 'n', default_value_t = 500)]
    n: usize,
    /// Workflows in flight at once (sleepers: start calls in flight).
    #[arg(long, short = 'c', default_value_t = 100)]
    concurrency: usize,
    /// Activities each workflow runs in sequence.
    #[arg(long, default_value_t = 1)]
    activities: u32,
    /// Unmeasured workflows run first (connections, caches, JIT-free but still warm).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Ask the server to hand the first workflow task back with the start response (off by
    /// default, as in the SDK).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    eager_start: bool,
    /// PID of the server process, for CPU seconds and peak RSS of the measured phase.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up on the measured phase after this many seconds (sleepers: when no more workflow
    /// was armed, or completed after the first timer was due, for this many seconds).
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Scenario name printed in the JSON line.
    #[arg(long)]
    label: Option<String>,
}

struct BenchActivities;

#[activities]
impl BenchActivities {
    /// Returns its input: the activity's cost is the server round trip only.
    #[activity]
    async fn echo(_ctx: ActivityContext, input: u32) -> Result<u32, ActivityError> {
        Ok(input)
    }
}

#[workflow]
#[derive(Default)]
pub struct SequentialActivities;

#[workflow_methods]
impl SequentialActivities {
    /// Runs `count` activities one after the other and returns the sum of their results.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, count: u32) -> WorkflowResult<u32> {
        let mut sum = 0u32;
        for i in 0..count {
            sum += ctx
                .execute_activity(
                    BenchActivities::echo,
                    i,
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30)).build(),
                )
                .await?;
        }
        Ok(sum)
    }
}

/// CPU seconds (user + system) of a process from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux configuration this runs on.
    100.0
}

/// Resident set size of a process in KiB (VmRSS).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Polls the server's RSS every 10 ms until stopped; keeps the maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn connect(address: &str, namespace: &str) -> Result<Client, String> {
    let with_scheme = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let url = Url::from_str(&with_scheme).map_err(|e| format!("bad address {address}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let opts = ConnectionOptions::new(url.clone())
            .identity("sundial-bench-rust".to_string())
            .connect_timeout(Duration::from_secs(2))
            .build();
        match tokio::time::timeout(Duration::from_secs(5), Connection::connect(opts)).await {
            Ok(Ok(conn)) => {
                return Client::new(conn, ClientOptions::new(namespace).build())
                    .map_err(|e| format!("client: {e:?}"));
            }
            Ok(Err(e)) if Instant::now() >= deadline => return Err(format!("connect: {e:?}")),
            Err(_) if Instant::now() >= deadline => return Err("connect timed out".into()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs `n` workflows with `concurrency` in flight; returns per-workflow latencies (ms)
/// and the error messages of the ones that failed.
async fn run_batch(
    client: &Client,
    task_queue: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
    activities: u32,
    eager: bool,
) -> (Vec<f64>, Vec<String>) {
    let results: Vec<Result<f64, String>> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let id = format!("{prefix}-{i}");
            let tq = task_queue.to_string();
            async move {
                let t0 = Instant::now();
                let mut opts = WorkflowStartOptions::new(tq, id).build();
                opts.enable_eager_workflow_start = eager;
                let handle = client
                    .start_workflow(SequentialActivities::run, activities, opts)
                    .await
                    .map_err(|e| format!("start: {e}"))?;
                let sum = handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .map_err(|e| format!("result: {e}"))?;
                let expected = activities * activities.saturating_sub(1) / 2;
                if sum != expected {
                    return Err(format!("wrong result {sum}, expected {expected}"));
                }
                Ok(t0.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut lat = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(ms) => lat.push(ms),
            Err(e) => errors.push(e),
        }
    }
    (lat, errors)
}

/// Prints a failed scenario's JSON line and exits non-zero.
fn fail(label: &str, msg: String) -> ! {
    println!(
        "{}",
        json!({"scenario": label, "driver": "rust", "ok": false, "error": msg})
    );
    std::process::exit(1);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let label = args.label.clone().unwrap_or_else(|| {
        if args.scenario == Scenario::Sleepers {
            match args.mode {
                sleepers::Mode::Arm => "rust_sleepers_arm".into(),
                sleepers::Mode::Fire => "rust_sleepers_fire".into(),
            }
        } else if args.activities == 1 {
            "rust_throughput_1_activity".into()
        } else {
            format!("rust_throughput_{}_activities", args.activities)
        }
    });

    let client = match connect(&args.address, &args.namespace).await {
        Ok(c) => c,
        Err(e) => fail(&label, e),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let run_id = format!("{}-{nanos}", std::process::id());
    let task_queue = format!("bench-rust-{run_id}");

    let worker_options = WorkerOptions::new(task_queue.clone())
        .register_workflow::<SequentialActivities>()
        .unwrap_or_else(|e| fail(&label, format!("register workflow: {e:?}")))
        .register_workflow::<sleepers::Sleeper>()
        .unwrap_or_else(|e| fail(&label, format!("register workflow: {e:?}")))
        .register_activities(BenchActivities)
        .graceful_shutdown_period(Duration::from_secs(1))
        .build();
    let runtime = Runtime::from_current_tokio(Default::default())
        .unwrap_or_else(|e| fail(&label, format!("runtime: {e:?}")));
    let mut worker = Worker::new(&runtime, client.clone(), worker_options)
        .unwrap_or_else(|e| fail(&label, format!("worker: {e:?}")));
    let shutdown = worker.shutdown_handle();
    let run = worker.run();
    tokio::pin!(run);

    let sleeper_options = sleepers::Options {
        label: label.clone(),
        mode: args.mode,
        n: args.n,
        concurrency: args.concurrency,
        timer_s: args.timer_s,
        server_pid: args.server_pid,
        timeout_s: args.timeout_s,
        rss_wait_s: args.rss_wait_s,
        history_sample: args.history_sample,
        arm_check: args.arm_check,
    };
    let body = async {
        if args.scenario == Scenario::Sleepers {
            return sleepers::run(&client, &task_queue, &run_id, &sleeper_options).await;
        }
        let (_, warm_errors) = run_batch(
            &client,
            &task_queue,
            &format!("bench-rust-warm-{run_id}"),
            args.warmup,
            args.concurrency.min(args.warmup.max(1)),
            args.activities,
            args.eager_start,
        )
        .await;
        if !warm_errors.is_empty() {
            return Err(format!("warm-up failed: {}", warm_errors[0]));
        }
        let me = std::process::id().to_string();
        let server_pid = args.server_pid.map(|p| p.to_string());
        let cpu0 = cpu_seconds(&me);
        let server_cpu0 = server_pid.as_deref().and_then(cpu_seconds);
        let sampler = args.server_pid.map(RssSampler::start);
        let t0 = Instant::now();
        let batch = tokio::time::timeout(
            Duration::from_secs(args.timeout_s),
            run_batch(
                &client,
                &task_queue,
                &format!("bench-rust-{run_id}"),
                args.n,
                args.concurrency,
                args.activities,
                args.eager_start,
            ),
        )
        .await;
        let wall = t0.elapsed().as_secs_f64();
        let peak_kib = sampler.map(RssSampler::finish);
        let (mut lat, errors) = match batch {
            Ok(r) => r,
            Err(_) => return Err(format!("timed out after {} s", args.timeout_s)),
        };
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
        let driver_cpu = match (cpu0, cpu_seconds(&me)) {
            (Some(a), Some(b)) => Some(round3(b - a)),
            _ => None,
        };
        let server_cpu = match (server_cpu0, server_pid.as_deref().and_then(cpu_seconds)) {
            (Some(a), Some(b)) => Some(round3(b - a)),
            _ => None,
        };
        Ok(json!({
            "scenario": label,
            "driver": "rust",
            "ok": errors.is_empty(),
            "n": args.n,
            "concurrency": args.concurrency,
            "activities_per_workflow": args.activities,
            "eager_start": args.eager_start,
            "completed": lat.len(),
            "failed": errors.len(),
            "first_error": errors.first(),
            "wall_s": round3(wall),
            "throughput_per_s": round3(lat.len() as f64 / wall),
            "mean_ms": round3(mean),
            "p50_ms": round3(percentile(&lat, 0.50)),
            "p95_ms": round3(percentile(&lat, 0.95)),
            "p99_ms": round3(percentile(&lat, 0.99)),
            "max_ms": round3(lat.last().copied().unwrap_or(f64::NAN)),
            "driver_cpu_s": driver_cpu,
            "server_cpu_s": server_cpu,
            "server_peak_rss_mb": peak_kib.map(|k| round3(k as f64 / 1024.0)),
        }))
    };
    tokio::pin!(body);
    let outcome = tokio::select! {
        res = &mut run => Err(format!("worker stopped early: {res:?}")),
        out = &mut body => out,
    };
    shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    match outcome {
        Ok(line) => {
            let ok = line["ok"].as_bool().unwrap_or(false);
            println!("{line}");
            if !ok {
                std::process::exit(1);
            }
        }
        Err(e) => fail(&label, e),
    }
}
