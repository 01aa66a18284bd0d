import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT } from '../support/paths.js';
import { MODEL_ID, health, slowLoader, startServer, waitFor, type RunningServer } from './serverHarness.js';

// The web UI in real headless Chromium (Debian's, installed by .ci/run) against a real server
// with the embedded model. The engine pauses 60 ms per token so a reply is visibly streamed
// and can be stopped on any machine.
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = process.env.QLLAMA_SCREENSHOT_DIR ?? path.join(REPO_ROOT, 'dist', 'screenshots');
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run the browser tests`;

let srv: RunningServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

before(async () => {
  if (skip) return;
  const index = path.join(REPO_ROOT, 'web', 'dist', 'index.html');
  assert.ok(existsSync(index), `${index} is missing: run \`npm run build:web\` (npm test does it in pretest)`);
  srv = await startServer({ load: false, loader: slowLoader(60) });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Flags from the machine notes: no sandbox as root, and no background connections
    // (the network is closed; Chromium would otherwise retry Google's hosts). Playwright
    // gives each launch a fresh, empty profile directory itself.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  if (skip) return;
  await browser?.close();
  await srv?.close();
});

const shot = (name: string): Promise<Buffer> => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
const lastReply = (): Promise<string> => page.locator('#chat-log .msg.assistant .text').last().innerText();
/** Browser-side conditions as source text: the test is compiled without the DOM library. */
const statusIs = (id: string, text: string): string => `document.querySelector('#${id}')?.textContent === ${JSON.stringify(text)}`;
const REPLY_LENGTH = `(() => { const t = document.querySelectorAll('#chat-log .msg.assistant .text'); return (t[t.length - 1]?.textContent ?? '').length; })()`;
const setParam = async (name: string, value: string): Promise<void> => {
  await page.fill(`#param-${name}`, value);
  await page.dispatchEvent(`#param-${name}`, 'change');
};

test('Model tab: the dropdown lists the embedded model with its detected settings; Load loads it', { skip }, async () => {
  const offsite: string[] = [];
  page.on('request', (r) => { if (!r.url().startsWith(srv.url)) offsite.push(r.url()); });
  await page.goto(srv.url);
  await page.click('#tab-button-model');
  await page.waitForSelector(`#model-select option[value="${MODEL_ID}"]`, { state: 'attached' });
  await page.selectOption('#model-select', MODEL_ID);
  const settings = await page.innerText('#model-settings');
  assert.match(settings, /bits\s+4/);
  assert.match(settings, /groupsize\s+128/);
  assert.match(settings, /act-order\s+yes/);
  assert.equal(await page.inputValue('#model-template'), 'stable-vicuna');
  await page.click('#model-load');
  await page.waitForFunction(`document.querySelector('#model-status')?.textContent?.startsWith('Loaded ${MODEL_ID}')`);
  assert.equal(await page.innerText('#model-badge'), MODEL_ID);
  assert.equal((await health(srv.url)).model, MODEL_ID);
  await shot('model-tab');
  assert.deepEqual(offsite, [], 'the UI makes no requests beyond its own server');
});

test('Chat tab: a changed parameter is sent, the reply streams in and never writes ### Human:', { skip }, async () => {
  await page.click('#tab-button-chat');
  await page.selectOption('#param-preset', 'Deterministic');
  await setParam('max_tokens', '40');
  const sent = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await page.fill('#chat-input', 'What is the capital of France?');
  await page.press('#chat-input', 'Enter');
  const body = JSON.parse((await sent).postData() ?? '{}') as Record<string, unknown>;
  assert.equal(body.max_tokens, 40, 'the Parameters panel value is used');
  assert.equal(body.temperature, 0, 'the Deterministic preset is used');
  assert.equal(body.stream, true);

  // Streamed: text appears while generation is still running (Stop enabled).
  await page.waitForFunction(`${REPLY_LENGTH} > 0 && !document.querySelector('#chat-stop').disabled`);
  await page.waitForFunction(statusIs('chat-status', 'Done.'), undefined, { timeout: 30_000 });
  const reply = await lastReply();
  assert.ok(reply.trim().length > 0);
  assert.ok(!reply.includes('### Human:'), reply);
  await shot('chat-tab');
});

test('Stop ends a reply mid-stream and frees the server; Regenerate replaces it', { skip }, async () => {
  const before = await lastReply();
  await page.click('#chat-regenerate');
  await page.waitForFunction(`${REPLY_LENGTH} > 3`);
  await page.click('#chat-stop');
  await page.waitForFunction(statusIs('chat-status', 'Stopped.'));
  const partial = await lastReply();
  assert.ok(partial.length > 0 && partial.length < before.length, `stopped early: ${JSON.stringify(partial)} vs ${JSON.stringify(before)}`);
  await waitFor(async () => (await health(srv.url)).running === 0, 5_000, 'the server to free the slot');

  await page.click('#chat-regenerate');
  await page.waitForFunction(statusIs('chat-status', 'Done.'), undefined, { timeout: 30_000 });
  assert.equal(await lastReply(), before, 'a greedy regenerate gives the full reply again');
});

test('history survives a reload; Remove last and New chat edit it', { skip }, async () => {
  const messages = await page.locator('#chat-log .msg').allInnerTexts();
  await page.reload();
  await page.waitForSelector('#chat-log .msg');
  assert.deepEqual(await page.locator('#chat-log .msg').allInnerTexts(), messages);
  assert.equal(await page.inputValue('#param-max_tokens'), '40', 'parameters survive too');

  await page.click('#chat-remove-last');
  assert.equal(await page.locator('#chat-log .msg').count(), messages.length - 1);
  await page.click('#chat-new');
  assert.equal(await page.locator('#chat-log .msg').count(), 0);
  await page.reload();
  assert.equal(await page.locator('#chat-log .msg').count(), 0);
});

test('Notebook tab completes raw text; phone-width layout fits', { skip }, async () => {
  await page.click('#tab-button-notebook');
  await page.fill('#notebook-text', '### Human: Name a fruit.\n### Assistant:');
  await setParam('max_tokens', '8');
  await page.click('#notebook-generate');
  await page.waitForFunction(statusIs('notebook-status', 'Done.'), undefined, { timeout: 30_000 });
  const text = await page.inputValue('#notebook-text');
  assert.ok(text.length > '### Human: Name a fruit.\n### Assistant:'.length);
  await shot('notebook-tab');

  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('#tab-button-chat');
  const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
  assert.ok(overflow <= 1, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
  await shot('chat-phone');
  assert.deepEqual(pageErrors, [], 'no script errors in the page');
});
