// A person's path through the RabbitMQ management UI: log in, open a queue, "Move messages" to
// another queue. Driven in a real headless Chromium by Playwright; called by the worker's Rust
// test `replay_tools::management_ui_move_messages...`, which checks the outcome in PostgreSQL.
//
// Usage: node move-messages.mjs <management url> <user> <password> <from queue> <to queue> <screenshot dir>
// Exit 0 when the UI accepted the move; on any failure a full-page screenshot is saved in
// <screenshot dir>/move-messages-failure.png and the exit code is 1.
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [url, user, password, from, to, screenshots] = process.argv.slice(2);
if (!screenshots) {
  console.error('usage: node move-messages.mjs <url> <user> <password> <from> <to> <screenshot dir>');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  // This machine's network is closed: without these, Chromium keeps trying to reach Google.
  args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
});
// Answers the HTTP auth challenge a failed login triggers, which would otherwise open a native
// prompt that freezes the page (and the failure screenshot).
const context = await browser.newContext({ httpCredentials: { username: user, password } });
const page = await context.newPage();
page.setDefaultTimeout(20000);
let failed = false;
try {
  await page.goto(`${url}/`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('input[type=submit][value=Login]');
  await page.waitForSelector('#logout');

  await page.goto(`${url}/#/queues/${encodeURIComponent('/')}/${encodeURIComponent(from)}`);
  await page.waitForSelector(`h1:has-text("${from}")`);
  // The section is collapsed until its title is clicked.
  await page.click('h2:has-text("Move messages")');
  await page.fill('input[name=dest-queue]', to);
  await page.click('input[type=submit][value="Move messages"]');
  // On success the UI goes back to the queue list.
  await page.waitForURL(/#\/queues$/);
  console.log(`moved: ${from} -> ${to}`);
} catch (error) {
  failed = true;
  mkdirSync(screenshots, { recursive: true });
  const path = `${screenshots}/move-messages-failure.png`;
  await page.screenshot({ path, fullPage: true }).catch((e) => console.error(`screenshot failed: ${e.message}`));
  console.error(`failed: ${error.message}\nscreenshot: ${path}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
