// Temporal's TypeScript test environment on Sundial's time-skipping test server:
// TestWorkflowEnvironment.createTimeSkipping with the server binary as an existing path
// (SUNDIAL_TEST_SERVER_BIN). Run by conformance/test_time_skipping.py.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { TestWorkflowEnvironment } = require('@temporalio/testing');
const { Worker, Runtime, DefaultLogger, bundleWorkflowCode } = require('@temporalio/worker');

const SERVER = process.env.SUNDIAL_TEST_SERVER_BIN;
const DAY_MS = 24 * 3600 * 1000;
const HOUR_MS = 3600 * 1000;

Runtime.install({ logger: new DefaultLogger(process.env.TS_LOG_LEVEL || 'WARN') });

let bundle;
let env;

const attempts = new Map();
const activities = {
  async failTwice(key) {
    const n = (attempts.get(key) || 0) + 1;
    attempts.set(key, n);
    if (n < 3) throw new Error(`attempt ${n} fails`);
    return n;
  },
};

before(async () => {
  assert.ok(SERVER, 'SUNDIAL_TEST_SERVER_BIN names the test server binary');
  bundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows.js'),
    logger: new DefaultLogger('WARN'),
  });
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: SERVER } },
  });
});

after(async () => {
  if (env) await env.teardown();
});

async function withWorker(fn) {
  const taskQueue = `ts-${randomUUID()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    activities,
  });
  return await worker.runUntil(fn(taskQueue));
}

test('timer: a 30-day sleep completes in seconds of wall time', async () => {
  assert.equal(env.supportsTimeSkipping, true);
  await withWorker(async (taskQueue) => {
    const envBefore = await env.currentTimeMs();
    const started = Date.now();
    const [before, after] = await env.client.workflow.execute('longSleep', {
      args: [30 * DAY_MS],
      taskQueue,
      workflowId: `sleep-${taskQueue}`,
    });
    const wall = Date.now() - started;
    console.log(`# 30-day sleep: ${wall} ms of wall time`);
    assert.ok(wall < 3000, `took ${wall} ms`);
    assert.ok(after - before >= 30 * DAY_MS);
    assert.ok(Math.abs(before - envBefore) < 5000, 'workflow time is the environment time');
    assert.ok((await env.currentTimeMs()) >= after);
  });
});

test('activity: retries an hour apart are skipped', async () => {
  await withWorker(async (taskQueue) => {
    const started = Date.now();
    const [n, elapsed] = await env.client.workflow.execute('hourlyRetries', {
      args: [taskQueue],
      taskQueue,
      workflowId: `retry-${taskQueue}`,
    });
    assert.equal(n, 3);
    assert.ok(elapsed >= 2 * HOUR_MS, `elapsed ${elapsed} ms`);
    assert.ok(Date.now() - started < 5000);
  });
});

test('env.sleep: advances time by hand', async () => {
  await withWorker(async (taskQueue) => {
    const handle = await env.client.workflow.start('longSleep', {
      args: [DAY_MS],
      taskQueue,
      workflowId: `manual-${taskQueue}`,
    });
    const t0 = await env.currentTimeMs();
    await env.sleep(12 * HOUR_MS);
    assert.ok((await env.currentTimeMs()) - t0 >= 12 * HOUR_MS);
    assert.equal((await handle.describe()).status.name, 'RUNNING');
    await env.sleep(13 * HOUR_MS);
    assert.equal((await handle.describe()).status.name, 'COMPLETED');
  });
});
