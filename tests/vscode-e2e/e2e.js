// Drives code-server's workbench in Debian's headless Chromium with
// playwright-core: sets a breakpoint on the RSEQ-LINE of full_tables.c,
// starts the rseqdbg launch configuration, reads the Call Stack, Variables
// and Restartable Regions views, steps over the critical section, turns
// inspect mode on and steps inside the section in the Disassembly view,
// runs to the end, and runs the abort test on the launch configuration. Screenshots go to $ARTIFACTS. Started by run.sh.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const URL = need('URL');
const WORKSPACE = need('WORKSPACE');
const STATE = need('STATE');
const ARTIFACTS = need('ARTIFACTS');
const RSEQ_LINE = Number(need('RSEQ_LINE'));
const MAIN_LINE = Number(need('MAIN_LINE'));
const T0 = Date.now();

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set (run.sh sets it)`);
  }
  return v;
}

function log(msg) {
  console.log(`[e2e.js ${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}`);
}

function check(cond, msg) {
  if (!cond) {
    throw new Error('check failed: ' + msg);
  }
  log('ok: ' + msg);
}

const SEL = {
  paused: '.debug-toolbar .codicon-debug-continue',
  running: '.debug-toolbar .codicon-debug-pause',
  toolbar: '.debug-toolbar',
  stepOver: '.debug-toolbar .codicon-debug-step-over',
  continue: '.debug-toolbar .codicon-debug-continue',
  callStack: '.debug-call-stack .monaco-list-row',
  variables: '.debug-variables .monaco-list-row',
  repl: '.repl .monaco-list-row',
  lineCol: '#status\\.editor\\.selection',
  topFrameLine: '.monaco-editor .debug-top-stack-frame-line',
  breakpointGlyph: '.monaco-editor .codicon-debug-breakpoint',
};

let shot = 0;
async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${path.relative(process.cwd(), file)}`);
}

// Texts of the elements matching selector in a page or under a locator.
async function texts(within, selector) {
  const all = await within.locator(selector).allTextContents();
  return all.map((t) => t.replace(/\s+/g, ' ').trim());
}

// Runs a palette command by its exact label. Commands of extensions and
// "Debug: Start Debugging" show up only once the extension host is up: retry.
async function runCommand(page, label, tries = 15) {
  for (let i = 0; i < tries; i++) {
    await page.keyboard.press('F1');
    await page.waitForSelector('.quick-input-widget .quick-input-box input', { state: 'visible' });
    await page.keyboard.type(label, { delay: 5 });
    await page.waitForTimeout(300);
    for (const row of await page.$$('.quick-input-list .monaco-list-row')) {
      const l = (await row.getAttribute('aria-label')) || '';
      if (l === label || l.startsWith(label + ',')) {
        await row.click();
        return;
      }
    }
    await page.keyboard.press('Escape');
    await page.waitForTimeout(1000);
  }
  throw new Error('command not in palette: ' + label);
}

// What the Call Stack says about the stop: the state in its header when the
// session has one thread (VS Code then lists frames without a thread row),
// or the thread rows otherwise.
async function stopState(page) {
  const header = await texts(page, '.call-stack-state-message:not([hidden])');
  const threads = (await texts(page, SEL.callStack)).filter((r) => /^Thread/.test(r));
  return [...header, ...threads].filter((r) => r !== '');
}

// "Ln 41, Col 9" from the status bar.
async function cursorLine(page) {
  const t = (await texts(page, SEL.lineCol))[0] || '';
  const m = /Ln (\d+)/.exec(t);
  return m ? Number(m[1]) : undefined;
}

async function waitFor(what, fn, timeoutMs = 20000, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) {
      return last;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// The pane of a view in the side bar by its title; expanded if collapsed.
async function expandPane(page, title) {
  const header = page.locator(`.pane-header[aria-label^="${title}"]`).first();
  await header.waitFor({ state: 'visible', timeout: 20000 });
  if ((await header.getAttribute('aria-expanded')) === 'false') {
    await header.click();
  }
  return page.locator('.pane', { has: header }).first();
}

async function openFile(page, name) {
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget .quick-input-box input', { state: 'visible' });
  await page.keyboard.type(name, { delay: 5 });
  await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label^="${name}"]`, { timeout: 20000 });
  await page.keyboard.press('Enter');
  await page.waitForSelector(`.tab[data-resource-name="${name}"], .tab[aria-label^="${name}"]`, { timeout: 20000 });
  await page.waitForSelector('.monaco-editor .view-lines', { state: 'visible' });
}

async function goToLine(page, line) {
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+G');
  await page.waitForSelector('.quick-input-widget .quick-input-box input', { state: 'visible' });
  await page.keyboard.type(String(line));
  await page.keyboard.press('Enter');
  await waitFor(`cursor on line ${line}`, async () => (await cursorLine(page)) === line, 10000);
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(STATE, 'chrome-'));
  const home = path.join(STATE, 'xdg');
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: home + '/config', XDG_CACHE_HOME: home + '/cache' },
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  try {
    await run(page);
  } catch (e) {
    await screenshot(page, 'failure').catch(() => undefined);
    const dump = {
      callStack: await texts(page, SEL.callStack).catch(() => []),
      variables: await texts(page, SEL.variables).catch(() => []),
      repl: await texts(page, SEL.repl).catch(() => []),
      notifications: await texts(page, '.notification-toast .notification-list-item-message').catch(() => []),
    };
    log('state at failure: ' + JSON.stringify(dump, null, 1));
    throw e;
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function run(page) {
  log(`open ${WORKSPACE}`);
  await page.goto(URL + '/?folder=' + encodeURIComponent(WORKSPACE));
  await page.waitForSelector('.monaco-workbench .part.activitybar', { timeout: 60000 });
  await page.waitForSelector('.explorer-folders-view .monaco-list-row', { timeout: 60000 });
  await screenshot(page, 'workbench');

  // Breakpoint on the RSEQ-LINE through the workbench, as a person would.
  await openFile(page, 'full_tables.c');
  await goToLine(page, RSEQ_LINE);
  await runCommand(page, 'Debug: Toggle Breakpoint');
  await page.waitForSelector(SEL.breakpointGlyph, { timeout: 10000 });
  check(true, `breakpoint set on full_tables.c:${RSEQ_LINE}`);

  await runCommand(page, 'Debug: Start Debugging');
  log('waiting for the breakpoint');
  await waitFor('the pause at the breakpoint', async () => {
    if (await page.$(SEL.paused)) {
      return true;
    }
    const errors = await texts(page, '.monaco-dialog-box .dialog-message-text, .notification-toast .notification-list-item-message');
    if (errors.length > 0) {
      throw new Error('the debug session did not start: ' + errors.join(' | '));
    }
    return false;
  }, 60000);
  const stopLine = await waitFor('the stopped line', async () => {
    const l = await cursorLine(page);
    return (await page.$(SEL.topFrameLine)) && l ? l : undefined;
  });
  check(stopLine === RSEQ_LINE, `paused at the breakpoint, full_tables.c:${stopLine}`);

  // Call Stack: the thread, worker at the RSEQ-LINE and its callers down
  // to main (the launch runs the worker on the main thread: --main).
  const stack = await waitFor('call stack rows', async () => {
    const t = await texts(page, SEL.callStack);
    return t.some((r) => /^main\s*full_tables\.c/.test(r)) ? t : undefined;
  });
  log('call stack: ' + JSON.stringify(stack));
  // A row reads "<function><file><line>:<column>" (no spaces between).
  const at = (file, line) => new RegExp(`${file.replace('.', '\\.')}\\s*${line}:\\d+`);
  const frameAt = (fn, file, line) => stack.findIndex((r) => r.startsWith(fn) && at(file, line).test(r));
  const order = [
    frameAt('worker', 'full_tables.c', RSEQ_LINE),
    stack.findIndex((r) => r.startsWith('fixture_thread_start') && r.includes('fixture_common.c')),
    stack.findIndex((r) => r.startsWith('fixture_main') && r.includes('fixture_common.c')),
    frameAt('main', 'full_tables.c', MAIN_LINE),
  ];
  check(order[0] >= 0, 'Call Stack shows worker at full_tables.c:' + RSEQ_LINE);
  check(order.every((k, i) => k >= 0 && (i === 0 || k === order[i - 1] + 1)),
    `Call Stack goes worker <- fixture_thread_start <- fixture_main <- main (full_tables.c:${MAIN_LINE}), with source lines`);
  const state = await waitFor('the pause reason', async () => (await stopState(page)).find((r) => /paused on breakpoint/i.test(r)));
  check(true, `Call Stack says "${state}"`);

  // Variables: expand the Locals scope (VS Code expands only the first).
  await expandPane(page, 'Variables');
  const localsRow = page.locator(SEL.variables, { hasText: /^Locals$/ }).first();
  await localsRow.waitFor({ timeout: 20000 });
  check(true, 'Variables shows Locals');
  if ((await localsRow.getAttribute('aria-expanded')) === 'false') {
    await localsRow.click();
  }
  const vars = await waitFor('worker\'s locals', async () => {
    const t = await texts(page, SEL.variables);
    return t.some((r) => /^i\s*=\s*\d+/.test(r)) && t.some((r) => /^t\s*=\s*0x/.test(r)) ? t : undefined;
  });
  log('variables: ' + JSON.stringify(vars));
  check(true, 'Variables lists worker\'s locals with values (i, t)');

  // Restartable Regions: the fixture's critical sections.
  const pane = await expandPane(page, 'Restartable Regions');
  const regions = await waitFor('region rows', async () => {
    const t = await texts(pane, '.monaco-list-row');
    return t.filter((r) => /0x[0-9a-f]+/.test(r)).length >= 2 ? t : undefined;
  });
  log('regions: ' + JSON.stringify(regions));
  check(regions.some((r) => r.includes(`full_tables.c:${RSEQ_LINE}`)), 'Restartable Regions lists the inline section of the RSEQ-LINE');
  check(regions.some((r) => /inc_full/.test(r)), 'Restartable Regions lists inc_full\'s section');
  // The extension's decorations: gutter icon on the lines of the sections.
  const decorated = await waitFor('section decorations in the editor', async () => {
    const n = await page.evaluate(() =>
      [...document.querySelectorAll('.monaco-editor .glyph-margin-widgets *, .monaco-editor .margin-view-overlays *')]
        .filter((e) => getComputedStyle(e).backgroundImage.includes('region.svg')).length);
    return n > 0 ? n : undefined;
  }, 10000);
  check(decorated >= 1, `critical-section lines decorated in the gutter (${decorated})`);
  // The editor's hover at the cursor (on the RSEQ-LINE since the stop); a
  // mouse hover would be the debug hover of the word under it.
  await runCommand(page, 'Show or Focus Hover');
  const hover = await waitFor('the decoration\'s hover', async () => {
    const t = await texts(page, '.monaco-hover');
    return t.find((h) => /rseq critical section/.test(h));
  }, 10000);
  check(/commit/.test(hover), `hovering the RSEQ-LINE tells the section: "${hover.slice(0, 90)}…"`);
  await screenshot(page, 'section-hover');
  // Closed, so it does not hide the lines the next screenshots are about:
  // Escape with the focus back in the editor.
  const sectionHover = page.locator('.monaco-hover:visible', { hasText: 'rseq critical section' });
  for (let i = 0; i < 3 && (await sectionHover.count()) > 0; i++) {
    await runCommand(page, 'View: Focus Active Editor Group');
    await page.keyboard.press('Escape');
    await page.waitForTimeout(300);
  }
  check((await sectionHover.count()) === 0, 'the section hover closed');
  await page.mouse.move(5, 500);
  await screenshot(page, 'paused-at-breakpoint');

  // Step Over the line holding the critical section: it commits.
  await page.click(SEL.stepOver);
  const afterLine = await waitFor('the stop after Step Over', async () => {
    if (!(await page.$(SEL.paused))) {
      return undefined;
    }
    const l = await cursorLine(page);
    const st = await texts(page, SEL.callStack);
    const thread = (await stopState(page)).find((r) => !/Paused on breakpoint|Running/i.test(r)) || '';
    const top = st.find((r) => r.startsWith('worker')) || '';
    return l && l !== RSEQ_LINE && thread && top ? { l, thread, top } : undefined;
  });
  log(`after Step Over: line ${afterLine.l}, thread "${afterLine.thread}", frame "${afterLine.top}"`);
  check(at('full_tables.c', afterLine.l).test(afterLine.top), `the top frame is on the editor's current line ${afterLine.l}`);
  check(await page.$(SEL.topFrameLine), `the new current line ${afterLine.l} is highlighted`);
  check(/critical section committed/i.test(afterLine.thread), 'the Call Stack says the critical section committed');
  check(!/abort/i.test(afterLine.thread), 'Step Over did not stop in the abort handler');
  await screenshot(page, 'after-step-over');

  // Clicking a region reveals its source line.
  const row = pane.locator('.monaco-list-row', { hasText: `full_tables.c:${RSEQ_LINE}` }).first();
  await page.locator(SEL.lineCol).waitFor();
  await goToLine(page, 1);
  await row.click();
  await waitFor('the region\'s line revealed', async () => (await cursorLine(page)) === RSEQ_LINE, 10000);
  check(true, 'clicking the region revealed full_tables.c:' + RSEQ_LINE);
  await screenshot(page, 'region-revealed');

  // A region without source (a vDSO function) opens its disassembly.
  const vdsoRow = pane.locator('.monaco-list-row', { hasText: /^(gettimeofday|clock_gettime|time)vdso/ }).first();
  const vdsoName = /^(\w+)vdso/.exec((await vdsoRow.textContent()) || '')[1];
  await vdsoRow.click();
  await page.waitForSelector(`.tab[aria-label^="${vdsoName}.s"]`, { timeout: 15000 });
  const listing = await waitFor('the disassembly listing', async () => {
    const t = ((await page.locator('.editor-instance .monaco-editor .view-lines').first().textContent()) || '').replace(/\u00a0/g, ' ');
    return /<- start/.test(t) ? t : undefined;
  }, 10000);
  check(/vDSO function/.test(listing) && /<- start/.test(listing), `clicking ${vdsoName} opened its disassembly with its start marked`);
  await screenshot(page, 'vdso-disassembly');

  // Inspect mode: the status-bar item says it is off, the command turns it
  // on; at the next pause on the RSEQ-LINE, instruction steps in VS Code's
  // Disassembly view enter the inline section and advance inside it, each
  // stop saying "inspecting critical section NAME at +K of L".
  const inspectItem = async (state) => (await texts(page, '.statusbar-item')).find((t) => t.includes(`rseq inspect: ${state}`));
  await waitFor('the inspect status-bar item (off)', () => inspectItem('off'), 10000);
  await runCommand(page, 'rseqdbg: Toggle Inspect Mode');
  check(await waitFor('the inspect status-bar item (on)', () => inspectItem('on'), 10000), 'the status bar says rseq inspect: on');
  await page.click(SEL.continue);
  await waitFor('the next pause at the breakpoint', async () =>
    (await page.$(SEL.paused)) && (await stopState(page)).some((r) => /paused on breakpoint/i.test(r)), 30000);
  await runCommand(page, 'Open Disassembly View');
  const currentRow = page.locator('.disassembly-view .monaco-list-row', { has: page.locator('.codicon-debug-stackframe') }).first();
  const currentPC = async () => {
    const m = /0x[0-9a-fA-F]+/.exec((await currentRow.textContent({ timeout: 2000 }).catch(() => '')) || '');
    return m ? BigInt(m[0]) : undefined;
  };
  await waitFor('the current instruction in the Disassembly view', currentPC, 20000);
  let inside = [];
  for (let i = 0; i < 80 && inside.length < 4; i++) {
    const before = await currentPC();
    await currentRow.click({ position: { x: 300, y: 5 } });
    await page.keyboard.press('F11');
    const after = await waitFor('the instruction step in the Disassembly view', async () => {
      const pc = (await page.$(SEL.paused)) ? await currentPC() : undefined;
      return pc !== undefined && pc !== before ? pc : undefined;
    });
    const state = (await stopState(page)).find((r) => /inspecting critical section/.test(r));
    log(`stepi: 0x${after.toString(16)} ${state || ''}`);
    if (state) {
      const m = /inspecting critical section (\S+) at \+(\d+) of (\d+)/.exec(state);
      inside.push({ pc: after, name: m[1], k: Number(m[2]), len: Number(m[3]) });
    } else if (inside.length >= 3) {
      break;
    } else {
      // The section's own cpu check may send it to its abort handler (the
      // thread moved between its cpu read and the section, while stepped
      // slowly outside it): the retry enters it again.
      inside = [];
    }
  }
  check(inside.length >= 3, `instruction steps stopped ${inside.length} times inside ${inside[0] && inside[0].name}, inspecting`);
  for (let i = 1; i < inside.length; i++) {
    const a = inside[i - 1];
    const b = inside[i];
    check(b.pc > a.pc && b.pc - a.pc === BigInt(b.k - a.k) && b.k < b.len,
      `the Disassembly view's PC advanced inside the section: 0x${a.pc.toString(16)} (+${a.k}) -> 0x${b.pc.toString(16)} (+${b.k} of ${b.len})`);
  }
  await screenshot(page, 'inspect-disassembly');

  // Run to the end without the breakpoint.
  await page.click('.tab[aria-label^="full_tables.c"]');
  await goToLine(page, RSEQ_LINE);
  await runCommand(page, 'Debug: Toggle Breakpoint');
  await page.locator('.debug-breakpoints .monaco-list-row').first().waitFor({ state: 'detached', timeout: 10000 });
  await page.click(SEL.continue);
  await page.waitForSelector(SEL.toolbar, { state: 'hidden', timeout: 60000 });
  check(true, 'the session ended');
  const repl = await waitFor('program output in the Debug Console', async () => {
    const t = await texts(page, SEL.repl);
    return t.some((r) => /RESULT total=/.test(r)) ? t : undefined;
  }, 10000).catch(async () => {
    await runCommand(page, 'Debug: Focus on Debug Console View');
    return waitFor('program output in the Debug Console', async () => {
      const t = await texts(page, SEL.repl);
      return t.some((r) => /RESULT total=/.test(r)) ? t : undefined;
    }, 10000);
  });
  log('debug console: ' + JSON.stringify(repl.slice(-6)));
  check(repl.some((r) => /RESULT total=100 expected=100/.test(r)), 'the program printed RESULT total=100 expected=100');
  await screenshot(page, 'ended');

  // Run Abort Test on the launch configuration: its coverage per section
  // in the Restartable Regions view (shown for the result after the session).
  await runCommand(page, 'rseqdbg: Run Abort Test');
  const passed = await waitFor('the abort-test notification', async () =>
    (await texts(page, '.notification-toast .notification-list-item-message')).find((t) => /abort-test (passed|.*fails)/.test(t)), 120000, 500);
  check(/abort-test passed: (\d+)\/\1 abort positions covered/.test(passed), `notification: "${passed}"`);
  const covPane = await expandPane(page, 'Restartable Regions');
  const covRows = await waitFor('coverage rows', async () => {
    const t = await texts(covPane, '.monaco-list-row');
    return t.filter((r) => /positions covered/.test(r)).length >= 2 ? t : undefined;
  }, 20000);
  log('abort-test rows: ' + JSON.stringify(covRows));
  check(covRows.some((r) => /worker\+\d+.*(\d+)\/\1 positions covered.*full_tables\.c:/.test(r)), 'Restartable Regions shows the inline section covered/total with its source line');
  await screenshot(page, 'abort-test');
  log('PASS');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  },
);
