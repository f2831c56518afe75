// Temporal's TypeScript SDK against a running server (Sundial, or the reference dev server:
// both pass). The server's address comes from TEMPORAL_ADDRESS; conformance/
// test_typescript_sdk.py starts Sundial and runs this file with `node --test`.
//
// Workflow code is bundled once (that takes seconds) and shared by every worker here.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { Connection, Client, WorkflowUpdateFailedError } = require('@temporalio/client');
const { Worker, NativeConnection, Runtime, DefaultLogger, bundleWorkflowCode } = require('@temporalio/worker');

const ADDRESS = process.env.TEMPORAL_ADDRESS || '127.0.0.1:7233';
const NAMESPACE = 'default';

Runtime.install({ logger: new DefaultLogger(process.env.TS_LOG_LEVEL || 'WARN') });

let bundle;
let nativeConnection;
let connection;
let client;
let worker;
let workerRun;
let taskQueue;

// The shared worker's activities.
const activities = {
  async echo(input) {
    return input;
  },
  async greet(name) {
    return `Hello, ${name}`;
  },
  async upper(text) {
    return text.toUpperCase();
  },
};

// TS_SKIP: names of cases to skip, one a line (the pytest wrapper's SKIPPED list).
const SKIP = new Set((process.env.TS_SKIP || '').split('\n').filter(Boolean));

function sdkTest(name, fn) {
  test(name, { skip: SKIP.has(name) ? 'listed in TS_SKIP' : false }, fn);
}

function uid(prefix) {
  return `${prefix}-${randomUUID()}`;
}

// Waits for `promise` at most `ms`; on timeout terminates the workflow (so it does not keep
// retrying a task after the test) and fails with `what`.
async function within(ms, promise, handle, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } catch (err) {
    if (handle) await handle.terminate('test gave up').catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function events(handle) {
  const history = await handle.fetchHistory();
  return history.events;
}

before(async () => {
  const started = Date.now();
  bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows.js'), logger: new DefaultLogger('WARN') });
  console.log(`# workflow bundle built in ${Date.now() - started} ms`);
  nativeConnection = await NativeConnection.connect({ address: ADDRESS });
  connection = await Connection.connect({ address: ADDRESS });
  client = new Client({ connection, namespace: NAMESPACE });
  taskQueue = uid('ts');
  worker = await Worker.create({
    connection: nativeConnection,
    namespace: NAMESPACE,
    taskQueue,
    workflowBundle: bundle,
    activities,
  });
  workerRun = worker.run();
});

after(async () => {
  if (worker) {
    worker.shutdown();
    await workerRun;
  }
  if (connection) await connection.close();
  if (nativeConnection) await nativeConnection.close();
});

sdkTest('activity/basic_no_workflow_timeout: activities with a single timeout reach the worker', async () => {
  const handle = await client.workflow.start('basicNoWorkflowTimeout', { taskQueue, workflowId: uid('no-timeout') });
  assert.equal(await within(20000, handle.result(), handle, 'workflow'), 'hello');
  const scheduled = (await events(handle))
    .map((e) => e.activityTaskScheduledEventAttributes)
    .filter(Boolean);
  assert.equal(scheduled.length, 2);
  // Every timeout is present, zero where the workflow set none (as the reference records).
  const seconds = (d) => (d ? Number(d.seconds || 0) : null);
  assert.deepEqual(
    scheduled.map((a) => [a.scheduleToCloseTimeout, a.scheduleToStartTimeout, a.startToCloseTimeout, a.heartbeatTimeout].map(seconds)),
    [
      [60, 60, 60, 0],
      [0, 0, 60, 0],
    ],
  );
});

sdkTest('activity/shutdown: an activity ignoring shutdown times out schedule-to-close', async () => {
  let notify;
  const shutdownRequested = new Promise((resolve) => {
    notify = resolve;
  });
  const shutdownActivities = {
    async cancelSuccess() {
      await shutdownRequested;
    },
    async cancelFailure() {
      await shutdownRequested;
      throw new Error('worker is shutting down');
    },
    async cancelIgnore() {
      // Ignores cancellation: a plain timer, far past its 300 ms schedule-to-close timeout.
      await new Promise((resolve) => setTimeout(resolve, 3000));
    },
  };
  const queue = uid('ts-shutdown');
  const options = {
    connection: nativeConnection,
    namespace: NAMESPACE,
    taskQueue: queue,
    workflowBundle: bundle,
    activities: shutdownActivities,
    shutdownGraceTime: '1s',
  };
  const first = await Worker.create(options);
  const firstRun = first.run();
  const handle = await client.workflow.start('shutdownWorkflow', { taskQueue: queue, workflowId: uid('shutdown') });
  const deadline = Date.now() + 5000;
  while (!(await events(handle)).some((e) => e.activityTaskScheduledEventAttributes)) {
    assert.ok(Date.now() < deadline, 'no activity scheduled within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  notify();
  first.shutdown();
  await firstRun;
  const second = await Worker.create(options);
  const result = await second.runUntil(within(20000, handle.result(), handle, 'workflow'));
  assert.equal(result.failure.error, 'ActivityFailure');
  assert.equal(result.failure.causeMessage, 'worker is shutting down');
  assert.deepEqual(result.ignored, {
    error: 'ActivityFailure',
    retryState: 'TIMEOUT',
    cause: 'TimeoutFailure',
    causeMessage: 'Not enough time to schedule next retry before activity ScheduleToClose timeout, giving up retrying',
    timeoutType: 'SCHEDULE_TO_CLOSE',
  });
});

sdkTest('round trip: activity, signal, query, update, child workflow', async () => {
  const workflowId = uid('round-trip');
  const handle = await client.workflow.start('roundTrip', { taskQueue, workflowId, args: ['Sundial'] });
  const waitFor = async (stage) => {
    const deadline = Date.now() + 10000;
    for (;;) {
      const s = await handle.query('status');
      if (s.stage === stage) return s;
      assert.ok(Date.now() < deadline, `stage ${stage} not reached, last ${JSON.stringify(s)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  assert.deepEqual(await waitFor('greeted'), { stage: 'greeted', total: 0, approved: false });
  assert.equal(await handle.executeUpdate('add', { args: [1] }), 1);
  await assert.rejects(handle.executeUpdate('add', { args: [-5] }), (err) => {
    assert.ok(err instanceof WorkflowUpdateFailedError, `got ${err}`);
    assert.match(err.cause.message, /cannot add -5/);
    return true;
  });
  assert.equal(await handle.executeUpdate('add', { args: [2] }), 3);
  await handle.signal('approve', 'lead');
  const result = await within(20000, handle.result(), handle, 'workflow');
  assert.deepEqual(result, { greeting: 'Hello, Sundial', shouted: 'HELLO, SUNDIAL!', total: 3, approved: 'lead' });
  // A query on the closed run replays it.
  assert.deepEqual(await handle.query('status'), { stage: 'done', total: 3, approved: 'lead' });
  const history = await events(handle);
  const has = (key) => history.some((e) => e[key]);
  for (const key of [
    'activityTaskCompletedEventAttributes',
    'workflowExecutionSignaledEventAttributes',
    'workflowExecutionUpdateAcceptedEventAttributes',
    'workflowExecutionUpdateCompletedEventAttributes',
    'childWorkflowExecutionCompletedEventAttributes',
  ]) {
    assert.ok(has(key), `history has no ${key}`);
  }
  // The rejected update left no trace in history.
  assert.equal(history.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length, 2);
  const child = client.workflow.getHandle(`${workflowId}-child`);
  assert.equal((await child.describe()).status.name, 'COMPLETED');
});

sdkTest('schedule/cron: a cron workflow with @every runs again and again', async () => {
  const workflowId = uid('cron');
  const handle = await client.workflow.start('cronRun', { taskQueue, workflowId, cronSchedule: '@every 2s' });
  try {
    const deadline = Date.now() + 15000;
    let completed = [];
    while (completed.length < 2) {
      assert.ok(Date.now() < deadline, `only ${completed.length} cron runs completed within 15 s`);
      await new Promise((resolve) => setTimeout(resolve, 250));
      completed = [];
      for await (const run of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
        if (run.status.name === 'COMPLETED') completed.push(run);
      }
    }
    // Each run waited for the next 2 s boundary before its first workflow task.
    const first = await client.workflow.getHandle(workflowId, completed[0].runId).fetchHistory();
    const started = first.events[0].workflowExecutionStartedEventAttributes;
    assert.equal(started.cronSchedule, '@every 2s');
    assert.ok(started.firstWorkflowTaskBackoff, 'a cron run starts after a backoff');
  } finally {
    await handle.terminate('cron test done').catch(() => {});
  }
});
