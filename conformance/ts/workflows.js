// Workflows of the TypeScript SDK tests (bundled once by the worker; see test/sdk.test.js).
'use strict';

const wf = require('@temporalio/workflow');

// activity/basic_no_workflow_timeout (Temporal's features harness): an activity with only a
// schedule-to-close timeout, then one with only a start-to-close timeout, in a workflow
// without timeouts.
const scheduleToCloseOnly = wf.proxyActivities({ scheduleToCloseTimeout: '1 minute' });
const startToCloseOnly = wf.proxyActivities({ startToCloseTimeout: '1 minute' });

async function basicNoWorkflowTimeout() {
  await scheduleToCloseOnly.echo('hello');
  return await startToCloseOnly.echo('hello');
}

// activity/shutdown: three activities running while the worker shuts down; one finishes, one
// fails, one ignores the cancellation and must time out (schedule-to-close, one attempt).
const graceful = wf.proxyActivities({ scheduleToCloseTimeout: '30s', retry: { maximumAttempts: 1 } });
const ignoring = wf.proxyActivities({ scheduleToCloseTimeout: '300ms', retry: { maximumAttempts: 1 } });

function describeFailure(err) {
  return {
    error: err && err.constructor ? err.constructor.name : String(err),
    retryState: err && err.retryState,
    cause: err && err.cause ? err.cause.constructor.name : null,
    causeMessage: err && err.cause ? err.cause.message : null,
    timeoutType: err && err.cause ? err.cause.timeoutType : null,
  };
}

async function shutdownWorkflow() {
  const success = graceful.cancelSuccess();
  const failure = graceful.cancelFailure();
  const ignored = ignoring.cancelIgnore();
  await success;
  const out = {};
  try {
    await failure;
    out.failure = 'completed';
  } catch (err) {
    out.failure = describeFailure(err);
  }
  try {
    await ignored;
    out.ignored = 'completed';
  } catch (err) {
    out.ignored = describeFailure(err);
  }
  return out;
}

// A round trip through the SDK's main paths: activity, signal, query, update (with a
// validator), child workflow.
const approve = wf.defineSignal('approve');
const status = wf.defineQuery('status');
const add = wf.defineUpdate('add');
const acts = wf.proxyActivities({ startToCloseTimeout: '10s' });

async function roundTrip(name) {
  let stage = 'waiting';
  let approved = false;
  let total = 0;
  wf.setHandler(approve, (by) => {
    approved = by;
  });
  wf.setHandler(status, () => ({ stage, total, approved }));
  wf.setHandler(
    add,
    (n) => {
      total += n;
      return total;
    },
    {
      validator: (n) => {
        if (n < 0) throw new Error(`cannot add ${n}`);
      },
    },
  );
  const greeting = await acts.greet(name);
  stage = 'greeted';
  await wf.condition(() => approved !== false && total >= 3);
  stage = 'child';
  const shouted = await wf.executeChild(shout, { args: [greeting], workflowId: `${wf.workflowInfo().workflowId}-child` });
  stage = 'done';
  return { greeting, shouted, total, approved };
}

async function shout(text) {
  return (await acts.upper(text)) + '!';
}

// schedule/cron: a cron workflow ('@every 2s') whose runs each complete.
async function cronRun() {
  return wf.workflowInfo().runId;
}

module.exports = { basicNoWorkflowTimeout, shutdownWorkflow, roundTrip, shout, cronRun };
