//! Scenario `sleepers` (issue 17): W workflows, each asleep on one timer of D seconds, then
//! completing. The worker's workflow code marks each workflow (by its index, so replays and
//! retried tasks count once) just before it arms its timer and again after the timer fired.
//!
//! * `arm`: start all W on a long timer (default one day), wait until every one is armed (the
//!   marks, then `TimerStarted` in the histories of the last ones started), read the server's
//!   resident memory a moment later and exit, leaving them asleep.
//! * `fire`: start W on a timer short enough to fire within the run but long enough for the
//!   last one to be armed before the first fires (from a probe batch's arming rate, unless
//!   `--timer-s` is given), keep the worker running until all W completed and report the
//!   server's fire delay (`TimerFired` time - `TimerStarted` time - D) from the histories of
//!   an evenly spread sample.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_client::{Client, WorkflowFetchHistoryOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{TimerResult, WorkflowContext, WorkflowResult};

use crate::{RssSampler, cpu_seconds, percentile, round3, rss_kib};

/// Workflows started by the probe of `fire` mode are tracked apart from the measured ones.
const MEASURED: usize = 0;
const PROBE: usize = 1;

/// One bit per workflow index, plus the number of distinct bits set and when the first was.
struct Marks {
    words: Vec<AtomicU64>,
    count: AtomicU64,
    first_at: OnceLock<Instant>,
}

impl Marks {
    fn new(n: usize) -> Self {
        Marks {
            words: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            first_at: OnceLock::new(),
        }
    }

    fn set(&self, index: u64) {
        let Some(word) = self.words.get((index / 64) as usize) else {
            return;
        };
        let bit = 1u64 << (index % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            self.first_at.get_or_init(Instant::now);
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }
}

struct Batch {
    armed: Marks,
    fired: Marks,
}

static BATCHES: OnceLock<[Batch; 2]> = OnceLock::new();

fn batch(which: usize) -> Option<&'static Batch> {
    BATCHES.get().and_then(|b| b.get(which))
}

/// The input of one sleeper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepInput {
    /// Which batch (measured or probe) the workflow belongs to.
    pub batch: usize,
    /// Index of the workflow in its batch.
    pub index: u64,
    /// Timer length in milliseconds.
    pub timer_ms: u64,
}

#[workflow]
#[derive(Default)]
pub struct Sleeper;

#[workflow_methods]
impl Sleeper {
    /// Sleeps on one timer, then returns its index.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: SleepInput) -> WorkflowResult<u64> {
        if let Some(b) = batch(input.batch) {
            b.armed.set(input.index);
        }
        if let TimerResult::Fired = ctx.timer(Duration::from_millis(input.timer_ms)).await
            && let Some(b) = batch(input.batch)
        {
            b.fired.set(input.index);
        }
        Ok(input.index)
    }
}

/// What the scenario needs from the command line.
pub struct Options {
    pub label: String,
    pub mode: Mode,
    pub n: usize,
    pub concurrency: usize,
    /// Timer length; `None` in `fire` mode = derived from a probe batch.
    pub timer_s: Option<f64>,
    pub server_pid: Option<u32>,
    /// Give up waiting for all to be armed (or, in `fire` mode, completed, counted from the
    /// first timer's due time) when none more was for this many seconds.
    pub timeout_s: u64,
    /// Seconds between "all armed" and the memory reading of `arm` mode.
    pub rss_wait_s: f64,
    /// Workflows whose histories are read for the fire delay (`fire` mode).
    pub history_sample: usize,
    /// Last-started workflows whose histories must show `TimerStarted` before "all armed".
    pub arm_check: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Arm,
    Fire,
}

fn workflow_id(prefix: &str, batch: usize, index: usize) -> String {
    if batch == PROBE {
        format!("{prefix}-probe-{index}")
    } else {
        format!("{prefix}-{index}")
    }
}

/// Starts `n` sleepers of `which` batch with `concurrency` starts in flight; returns the
/// number of failed starts and the first error.
async fn start_all(
    client: &Client,
    task_queue: &str,
    prefix: &str,
    which: usize,
    n: usize,
    timer_ms: u64,
    concurrency: usize,
) -> (usize, Option<String>) {
    let errors: Vec<String> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let opts = WorkflowStartOptions::new(task_queue, workflow_id(prefix, which, i)).build();
            async move {
                let input = SleepInput {
                    batch: which,
                    index: i as u64,
                    timer_ms,
                };
                client
                    .start_workflow(Sleeper::run, input, opts)
                    .await
                    .map(drop)
                    .map_err(|e| format!("start: {e}"))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    (errors.len(), errors.into_iter().next())
}

/// Waits until `count()` reaches `target`, or, once `not_before` has passed, until it has not
/// grown for `stall`; returns the last count.
async fn wait_count(
    count: impl Fn() -> usize,
    target: usize,
    not_before: Instant,
    stall: Duration,
) -> usize {
    let mut last = count();
    let mut last_change = Instant::now();
    loop {
        let c = count();
        let now = Instant::now();
        if c != last {
            last = c;
            last_change = now;
        }
        if c >= target || (now >= not_before && now >= last_change.max(not_before) + stall) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one workflow's history says about its timer.
#[derive(Default)]
struct TimerHistory {
    started_ns: Option<i128>,
    timeout_ns: Option<i128>,
    fired_ns: Option<i128>,
    completed: bool,
}

async fn timer_history(client: &Client, id: &str) -> Result<TimerHistory, String> {
    let events = client
        .get_workflow_handle::<Sleeper>(id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .map_err(|e| format!("history of {id}: {e}"))?;
    let mut h = TimerHistory::default();
    for ev in events {
        let t = ev
            .event_time
            .as_ref()
            .map(|t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128);
        match ev.attributes {
            Some(Attributes::TimerStartedEventAttributes(a)) => {
                h.started_ns = t;
                h.timeout_ns = a
                    .start_to_fire_timeout
                    .map(|d| d.seconds as i128 * 1_000_000_000 + d.nanos as i128);
            }
            Some(Attributes::TimerFiredEventAttributes(_)) => h.fired_ns = t,
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(_)) => h.completed = true,
            _ => {}
        }
    }
    Ok(h)
}

/// Reads the histories of `ids` (20 at a time), retrying each until `done` holds for it or
/// the deadline passes.
async fn histories(
    client: &Client,
    ids: Vec<String>,
    done: fn(&TimerHistory) -> bool,
    deadline: Instant,
) -> Vec<Result<TimerHistory, String>> {
    stream::iter(ids)
        .map(|id| async move {
            loop {
                let h = timer_history(client, &id).await;
                let finished = matches!(&h, Ok(h) if done(h));
                if finished || Instant::now() >= deadline {
                    return h;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .buffer_unordered(20)
        .collect()
        .await
}

fn mb(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| round3(k as f64 / 1024.0))
}

/// Runs the scenario with the worker already polling `task_queue`; returns its JSON line.
pub async fn run(
    client: &Client,
    task_queue: &str,
    run_id: &str,
    o: &Options,
) -> Result<Value, String> {
    if o.n == 0 {
        return Err("--n must be at least 1".into());
    }
    let probe_n = match (o.mode, o.timer_s) {
        (Mode::Fire, None) => (o.n / 50).clamp(100, 2000).min(o.n),
        _ => 0,
    };
    if BATCHES
        .set([
            Batch {
                armed: Marks::new(o.n),
                fired: Marks::new(o.n),
            },
            Batch {
                armed: Marks::new(probe_n),
                fired: Marks::new(probe_n),
            },
        ])
        .is_err()
    {
        return Err("the sleepers scenario runs once per process".into());
    }
    let measured = batch(MEASURED).ok_or("no batch")?;
    let probe = batch(PROBE).ok_or("no batch")?;
    let prefix = format!("sleeper-{run_id}");
    let server_pid = o.server_pid.map(|p| p.to_string());
    let me = std::process::id().to_string();

    // Timer length.
    let mut probe_rate = None;
    let timer_s = match (o.mode, o.timer_s) {
        (_, Some(d)) if !(d > 0.0 && d.is_finite()) => {
            return Err(format!("--timer-s must be positive, not {d}"));
        }
        (_, Some(d)) => d,
        (Mode::Arm, None) => 86_400.0,
        (Mode::Fire, None) => {
            // The probe's arming rate (start calls plus the worker's first workflow tasks,
            // from the first armed to the last, so without the worker's first poll) estimates
            // how long arming W takes; the measured timers are 1.5 times that plus 10 s, so
            // that the last one is armed before the first fires.
            let t = Instant::now();
            let (failed, first) = start_all(
                client,
                task_queue,
                &prefix,
                PROBE,
                probe_n,
                1000,
                o.concurrency,
            )
            .await;
            if failed > 0 {
                return Err(format!(
                    "probe: {failed} starts failed: {}",
                    first.unwrap_or_default()
                ));
            }
            let stall = Duration::from_secs(o.timeout_s);
            if wait_count(|| probe.armed.count(), probe_n, Instant::now(), stall).await < probe_n {
                return Err(format!(
                    "probe: not all armed (none more for {} s)",
                    o.timeout_s
                ));
            }
            let since = probe.armed.first_at.get().copied().unwrap_or(t);
            let rate =
                probe_n.saturating_sub(1).max(1) as f64 / since.elapsed().as_secs_f64().max(0.001);
            probe_rate = Some(rate);
            // Let the probe's timers fire and its workflows finish before the measured run.
            let due = t + Duration::from_secs(1);
            if wait_count(|| probe.fired.count(), probe_n, due, stall).await < probe_n {
                return Err(format!(
                    "probe: not all fired (none more for {} s)",
                    o.timeout_s
                ));
            }
            (1.5 * o.n as f64 / rate + 10.0).ceil()
        }
    };
    let timer_ms = (timer_s * 1000.0).round() as u64;

    let cpu0 = cpu_seconds(&me);
    let server_cpu0 = server_pid.as_deref().and_then(cpu_seconds);
    let sampler = o.server_pid.map(RssSampler::start);
    let t0 = Instant::now();
    let (failed, first_error) = start_all(
        client,
        task_queue,
        &prefix,
        MEASURED,
        o.n,
        timer_ms,
        o.concurrency,
    )
    .await;
    let start_phase = t0.elapsed().as_secs_f64();
    let started = o.n - failed;

    // All armed: every started workflow marked by the worker, then the last ones' histories
    // show TimerStarted (the worker's commands reached the server).
    let stall = Duration::from_secs(o.timeout_s);
    let armed_counted = wait_count(|| measured.armed.count(), started, Instant::now(), stall).await;
    let arm_deadline = Instant::now() + stall;
    let check_ids: Vec<String> = (o.n.saturating_sub(o.arm_check)..o.n)
        .map(|i| workflow_id(&prefix, MEASURED, i))
        .collect();
    let checked = histories(client, check_ids, |h| h.started_ns.is_some(), arm_deadline).await;
    let checked_armed = checked
        .iter()
        .filter(|h| matches!(h, Ok(h) if h.started_ns.is_some()))
        .count();
    let armed_all = t0.elapsed().as_secs_f64();
    let all_armed = armed_counted == started && checked_armed == checked.len();
    let mut out = json!({
        "scenario": o.label,
        "driver": "rust",
        "mode": match o.mode { Mode::Arm => "arm", Mode::Fire => "fire" },
        "n": o.n,
        "concurrency": o.concurrency,
        "timer_s": timer_s,
        "started": started,
        "failed": failed,
        "first_error": first_error,
        "start_phase_s": round3(start_phase),
        "start_rate_per_s": round3(o.n as f64 / start_phase.max(0.001)),
        "armed_counted": armed_counted,
        "armed_all_s": round3(armed_all),
        "armed_rate_per_s": round3(armed_counted as f64 / armed_all.max(0.001)),
        "last_checked": checked.len(),
        "last_checked_armed": checked_armed,
    });

    let mut ok = failed == 0 && all_armed;
    let mut error = (!all_armed).then(|| {
        format!(
            "not all armed (none more for {} s): {armed_counted} of {started} marked, \
             {checked_armed} of the last {} with TimerStarted",
            o.timeout_s,
            checked.len()
        )
    });
    match o.mode {
        Mode::Arm => {
            tokio::time::sleep(Duration::from_secs_f64(o.rss_wait_s)).await;
            out["rss_wait_s"] = json!(o.rss_wait_s);
            out["server_rss_all_sleeping_mb"] = json!(mb(o.server_pid.and_then(rss_kib)));
        }
        Mode::Fire => {
            out["timer_from"] = json!(if probe_n > 0 { "probe" } else { "--timer-s" });
            out["probe_n"] = json!(probe_n);
            out["probe_armed_rate_per_s"] = json!(probe_rate.map(round3));
            out["all_armed_before_first_fire"] = json!(all_armed && armed_all < timer_s);
            out["server_rss_all_sleeping_mb"] = json!(mb(o.server_pid.and_then(rss_kib)));
            // The first timer is due D after the first start.
            let due_first = t0 + Duration::from_secs_f64(timer_s);
            let completed = wait_count(|| measured.fired.count(), started, due_first, stall).await;
            let t_done = t0.elapsed().as_secs_f64();
            out["completed"] = json!(completed);
            out["wall_s"] = json!(round3(t_done));
            // From the first timer due (D after the first start) to the last completion.
            let fire_phase = (t_done - timer_s).max(0.001);
            out["fire_phase_s"] = json!(round3(fire_phase));
            out["fire_rate_per_s"] = json!(round3(completed as f64 / fire_phase));
            if completed < started && error.is_none() {
                error = Some(format!(
                    "{completed} of {started} completed (none more for {} s)",
                    o.timeout_s
                ));
            }
            ok &= completed == o.n;

            // Server fire delay from an evenly spread sample of histories (the last workflow
            // started included), each read until it shows the completion.
            let sample = o.history_sample.clamp(1, o.n);
            let mut idx: Vec<usize> = (0..sample).map(|k| k * o.n / sample).collect();
            if idx.last() != Some(&(o.n - 1)) {
                idx.push(o.n - 1);
            }
            let ids = idx
                .into_iter()
                .map(|i| workflow_id(&prefix, MEASURED, i))
                .collect();
            let hist_deadline = Instant::now() + Duration::from_secs(30);
            let hs = histories(client, ids, |h| h.completed, hist_deadline).await;
            let mut delays = Vec::with_capacity(hs.len());
            let mut sample_completed = 0;
            let mut hist_error = None;
            for h in &hs {
                match h {
                    Ok(h) => {
                        if h.completed {
                            sample_completed += 1;
                        }
                        if let (Some(s), Some(d), Some(f)) =
                            (h.started_ns, h.timeout_ns, h.fired_ns)
                        {
                            delays.push((f - s - d) as f64 / 1e6);
                        }
                    }
                    Err(e) => {
                        hist_error.get_or_insert_with(|| e.clone());
                    }
                }
            }
            delays.sort_by(f64::total_cmp);
            let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
            out["server_delay_sample"] = json!(delays.len());
            out["sample_completed_in_history"] = json!(sample_completed);
            out["server_fire_delay_mean_ms"] = json!(round3(mean));
            out["server_fire_delay_p50_ms"] = json!(round3(percentile(&delays, 0.50)));
            out["server_fire_delay_p95_ms"] = json!(round3(percentile(&delays, 0.95)));
            out["server_fire_delay_p99_ms"] = json!(round3(percentile(&delays, 0.99)));
            out["server_fire_delay_max_ms"] =
                json!(round3(delays.last().copied().unwrap_or(f64::NAN)));
            if sample_completed < hs.len() && error.is_none() {
                error = Some(hist_error.unwrap_or_else(|| {
                    format!(
                        "{} of {} sampled histories show no completion",
                        hs.len() - sample_completed,
                        hs.len()
                    )
                }));
            }
            ok &= sample_completed == hs.len() && delays.len() == hs.len();
        }
    }
    out["server_peak_rss_mb"] = json!(mb(sampler.map(RssSampler::finish)));
    out["server_cpu_s"] = json!(
        match (server_cpu0, server_pid.as_deref().and_then(cpu_seconds)) {
            (Some(a), Some(b)) => Some(round3(b - a)),
            _ => None,
        }
    );
    out["driver_cpu_s"] = json!(match (cpu0, cpu_seconds(&me)) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    });
    out["ok"] = json!(ok);
    if let Some(e) = error {
        out["error"] = json!(e);
    }
    Ok(out)
}
