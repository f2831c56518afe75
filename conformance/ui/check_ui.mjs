// Drives Sundial's web UI as a person would, in Debian's chromium, and writes a screenshot of
// each page to the artifacts folder. Input: one JSON argument (see test_ui_browser.py) naming
// the UI's URL and the workflows and schedule the test made. Exits non-zero on the first
// check that fails.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'sundial-chromium-'));

// A fresh profile each run (playwright passes it to chromium as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.setDefaultTimeout(15000);

const ns = 'default';
const wfUrl = (id) => `${cfg.url}/namespaces/${ns}/workflows/${encodeURIComponent(id)}`;
let step = 0;
async function shot(name) {
  step += 1;
  await page.screenshot({ path: join(cfg.artifacts, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
}
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}
const text = async (sel) => (await page.locator(sel).first().innerText()).trim();

try {
  // The list, its counts and its filters.
  await page.goto(`${cfg.url}/`);
  await page.waitForSelector('#workflows');
  const listed = await page.locator('#workflows tbody tr').allInnerTexts();
  for (const id of [cfg.completed, cfg.failed, cfg.running]) {
    check(listed.some((row) => row.includes(id)), `the list shows ${id}`);
  }
  await page.waitForSelector('#counts .chip[data-status="Completed"]');
  check((await text('#counts')).includes('Running'), 'counts by status are shown');
  await shot('workflows');

  await page.selectOption('#filter-status', 'Failed');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => new URLSearchParams(location.search).get('status') === 'Failed');
  await page.waitForSelector('#workflows');
  const failedRows = await page.locator('#workflows tbody tr').allInnerTexts();
  check(failedRows.length > 0 && failedRows.every((r) => r.includes('Failed')), 'the status filter keeps failed workflows only');
  check(failedRows.some((r) => r.includes(cfg.failed)), 'the failed workflow is among them');
  await shot('workflows-failed');

  await page.goto(`${cfg.url}/namespaces/${ns}/workflows?type=${encodeURIComponent(cfg.completedType)}`);
  await page.waitForSelector('#workflows');
  const typed = await page.locator('#workflows tbody tr').allInnerTexts();
  check(typed.length >= 1 && typed.every((r) => r.includes(cfg.completedType)), 'the type filter works');

  await page.goto(`${cfg.url}/namespaces/${ns}/workflows?query=${encodeURIComponent(`WorkflowId = "${cfg.completed}"`)}`);
  await page.waitForSelector('#workflows');
  check((await page.locator('#workflows tbody tr').count()) === 1, 'a query in Temporal\'s language narrows the list');

  // One completed workflow: summary, input, result, history, timeline.
  await page.goto(wfUrl(cfg.completed));
  await page.waitForSelector('#history');
  check((await text('#summary-status')) === 'Completed', 'the summary shows Completed');
  check((await text('#workflow-input')).includes(cfg.completedInput), 'the input is shown');
  check((await text('#workflow-result')).includes(cfg.completedResult), 'the result is shown');
  const events = await page.locator('#history tbody tr.event').count();
  check(events >= 5, `the history table has the events (${events})`);
  await page.locator('#history tbody tr.event').first().click();
  await page.waitForSelector('#history tr.details pre');
  check((await text('#history tr.details')).includes('taskQueue'), 'an event expands to its attributes');
  await shot('workflow-completed');
  await page.click('#view-timeline');
  await page.waitForSelector('#timeline');
  check((await text('#timeline')).includes('Activity'), 'the timeline shows the activity');
  await shot('workflow-timeline');

  // A failed workflow shows its failure.
  await page.goto(wfUrl(cfg.failed));
  await page.waitForSelector('#history');
  check((await text('#summary-status')) === 'Failed', 'the failed workflow is Failed');
  check((await text('#workflow-result')).includes(cfg.failedMessage), 'its failure message is shown');
  await shot('workflow-failed');

  // A running workflow: pending activity, child, call stack.
  await page.goto(wfUrl(cfg.running));
  await page.waitForSelector('#pending-activities');
  check((await text('#pending-activities')).includes(cfg.pendingActivity), 'the pending activity is listed');
  await page.waitForSelector('#pending-children');
  check((await text('#pending-children')).includes(cfg.child), 'the pending child is listed');
  await page.click('#action-stack');
  await page.waitForSelector('#stack-trace');
  await shot('workflow-running');

  // Signal it from the UI (the test checks through the SDK that it arrived).
  await page.click('#action-signal');
  await page.fill('#f-name', cfg.signalName);
  await page.fill('#f-input', JSON.stringify(cfg.signalArg));
  await shot('signal-dialog');
  await page.click('#dialog-confirm');
  await page.waitForSelector('#flash.notice');
  check((await text('#flash')).includes('Signal sent'), 'the signal was sent');

  // Terminate another from the UI.
  await page.goto(wfUrl(cfg.toTerminate));
  await page.waitForSelector('#action-terminate');
  await page.click('#action-terminate');
  await page.fill('#f-reason', 'from the browser');
  await page.click('#dialog-confirm');
  await page.waitForFunction(() => document.querySelector('#summary-status')?.innerText.includes('Terminated'), null, { timeout: 15000 });
  check(true, 'the workflow shows Terminated after terminating it');
  await shot('workflow-terminated');

  // An encrypted workflow: unreadable without a codec endpoint, readable with one.
  await page.goto(wfUrl(cfg.encrypted));
  await page.waitForSelector('#workflow-input');
  check((await text('#workflow-input')).includes('Encrypted payload'), 'encrypted input shows as encrypted');
  await shot('workflow-encrypted');
  await page.goto(`${cfg.url}/settings`);
  await page.fill('#codec-endpoint', cfg.codec);
  await page.click('#settings-form button[type=submit]');
  await page.goto(wfUrl(cfg.encrypted));
  await page.waitForFunction((secret) => document.querySelector('#workflow-input')?.innerText.includes(secret), cfg.secret);
  check(true, 'with the codec endpoint the input is decrypted');
  await shot('workflow-decrypted');

  // Schedules: list, detail, pause.
  await page.goto(`${cfg.url}/namespaces/${ns}/schedules`);
  await page.waitForSelector('#schedules');
  check((await text('#schedules')).includes(cfg.schedule), 'the schedule is listed');
  await shot('schedules');
  await page.goto(`${cfg.url}/namespaces/${ns}/schedules/${encodeURIComponent(cfg.schedule)}`);
  await page.waitForSelector('#schedule-spec');
  check((await text('#schedule-spec')).includes('every hour'), 'the spec is written in words');
  check((await page.locator('#upcoming li').count()) > 0, 'upcoming runs are listed');
  await page.click('#schedule-pause');
  await page.fill('#f-note', 'paused by the browser test');
  await page.click('#dialog-confirm');
  await page.waitForFunction(() => document.querySelector('#schedule-state')?.innerText === 'Paused');
  check(true, 'the schedule shows Paused after pausing it');
  await shot('schedule');

  // Namespaces, task queue, search attributes.
  await page.goto(`${cfg.url}/namespaces`);
  await page.waitForSelector('#namespaces');
  check((await text('#namespaces')).includes('default'), 'the namespaces page lists default');
  await shot('namespaces');
  await page.goto(`${cfg.url}/namespaces/${ns}/task-queues/${encodeURIComponent(cfg.taskQueue)}`);
  await page.waitForSelector('table.pollers');
  await shot('task-queue');
  await page.goto(`${cfg.url}/namespaces/${ns}/search-attributes`);
  await page.waitForSelector('#search-attributes');
  check((await text('#search-attributes')).includes('WorkflowType'), 'search attributes are listed');

  // A write without the page's token is refused (cross-site request protection).
  const refused = await page.evaluate(async () => (await fetch('/api/v1/namespaces/default/workflows/x/terminate', { method: 'POST', body: '{}' })).status);
  check(refused === 403, 'an API write without the CSRF token is refused');

  check(errors.length === 0, `no script errors (${errors.join('; ')})`);
} catch (e) {
  console.error(e.stack || String(e));
  try { await shot('failure'); } catch { /* the browser may be gone */ }
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log('browser checks passed');
