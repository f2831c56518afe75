// Workflows of the time-skipping tests (time_skipping.test.js), bundled once.
'use strict';

const wf = require('@temporalio/workflow');

// Sleeps `ms` and reports the workflow's clock before and after.
async function longSleep(ms) {
  const before = Date.now();
  await wf.sleep(ms);
  return [before, Date.now()];
}

const flaky = wf.proxyActivities({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '1 hour', backoffCoefficient: 1 },
});

// An activity whose first two attempts fail, retried an hour apart.
async function hourlyRetries(key) {
  const start = Date.now();
  const attempts = await flaky.failTwice(key);
  return [attempts, Date.now() - start];
}

module.exports = { longSleep, hourlyRetries };
