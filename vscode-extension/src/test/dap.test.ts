// Acceptance tests of `rseqdbg dap` through @vscode/debugadapter-testsupport's
// DebugClient, against the real Go binary (built by `npm run pretest` at
// <repo>/rseqdbg) and the C fixtures of tests/fixtures. They are skipped,
// saying why, when that binary has no `dap` subcommand.
import * as assert from 'assert';
import * as cp from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import { DebugProtocol } from '@vscode/debugprotocol';
import { addrValue, normalizeRegions, Region } from '../model';

const REPO = path.resolve(__dirname, '..', '..', '..');
const BINARY = process.env.RSEQDBG_BINARY ?? path.join(REPO, 'rseqdbg');
const FIXTURES = path.join(REPO, 'tests', 'fixtures');
const FULL_TABLES = path.join(FIXTURES, 'build', 'full_tables');
const FULL_TABLES_C = path.join(FIXTURES, 'full_tables.c');
const TIMEOUT = 20000;

/** 1-based line of the first line of file holding marker. */
function markerLine(file: string, marker: string): number {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes(marker));
  if (i < 0) {
    throw new Error(`${marker} not in ${file}`);
  }
  return i + 1;
}

/** Why the DAP tests cannot run, or undefined when they can. */
function skipReason(): string | undefined {
  if (!fs.existsSync(BINARY)) {
    return `${BINARY} is missing (npm run pretest builds it)`;
  }
  if (!fs.existsSync(FULL_TABLES)) {
    return `${FULL_TABLES} is missing (make -C tests/fixtures)`;
  }
  const r = cp.spawnSync(BINARY, ['dap', '--help'], { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0 || /unknown command/i.test(r.stderr + r.stdout)) {
    return `\`${path.relative(REPO, BINARY)} dap\` is not a known subcommand of this build (${(r.stderr || r.stdout).trim().split('\n')[0]})`;
  }
  return undefined;
}

const RSEQ_LINE = markerLine(FULL_TABLES_C, '/* RSEQ-LINE */');
const FUNC_ENTRY_LINE = markerLine(FULL_TABLES_C, '/* FUNC-ENTRY */');

interface Stop {
  event: DebugProtocol.StoppedEvent;
  frames: DebugProtocol.StackFrame[];
}

describe('rseqdbg dap (DebugClient against the Go binary)', function () {
  this.timeout(60000);
  let dc: DebugClient;
  let disconnected = false;
  let children: cp.ChildProcess[] = [];

  before(function () {
    const why = skipReason();
    if (why) {
      console.log(`      SKIPPED: ${why}`);
      this.skip();
    }
  });

  beforeEach(async () => {
    dc = new DebugClient(BINARY, 'dap', 'rseqdbg', { stdio: ['pipe', 'pipe', 'pipe'] }, true);
    dc.defaultTimeout = TIMEOUT;
    await dc.start();
    disconnected = false;
    // The adapter ends its process when the client disconnects: a later
    // write is an EPIPE, not a test failure.
    (dc as unknown as { _adapterProcess?: cp.ChildProcess })._adapterProcess?.stdin?.on('error', () => undefined);
  });

  /** Ends the session from the test; the adapter process exits after it. */
  async function disconnect(terminateDebuggee: boolean): Promise<void> {
    await dc.disconnectRequest({ terminateDebuggee });
    disconnected = true;
  }

  afterEach(async () => {
    if (dc) {
      // stop() disconnects, unless the test did: then the adapter is gone.
      if (!disconnected) {
        const stopped = dc.stop().catch(() => undefined);
        await Promise.race([stopped, new Promise((r) => setTimeout(r, 5000))]);
      }
      (dc as unknown as { stopAdapter(): void }).stopAdapter();
    }
    for (const c of children) {
      c.kill('SIGKILL');
    }
    children = [];
  });

  /** initialize + launch full_tables (threads, iterations) without configurationDone. */
  async function launch(extra: Record<string, unknown> = {}, args = ['1', '200']): Promise<void> {
    await dc.initializeRequest({ adapterID: 'rseqdbg', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path', supportsMemoryReferences: true });
    await dc.launchRequest({ program: FULL_TABLES, args, cwd: FIXTURES, ...extra } as DebugProtocol.LaunchRequestArguments);
  }

  async function setLineBreakpoints(lines: number[]): Promise<DebugProtocol.Breakpoint[]> {
    const r = await dc.setBreakpointsRequest({ source: { path: FULL_TABLES_C }, breakpoints: lines.map((line) => ({ line })) });
    return r.body.breakpoints;
  }

  async function waitStopped(): Promise<Stop> {
    const event = (await dc.waitForEvent('stopped', TIMEOUT)) as DebugProtocol.StoppedEvent;
    const threadId = event.body.threadId ?? (await dc.threadsRequest()).body.threads[0].id;
    event.body.threadId = threadId;
    const st = await dc.stackTraceRequest({ threadId, startFrame: 0, levels: 20 });
    return { event, frames: st.body.stackFrames };
  }

  /** Launch, break on the RSEQ-LINE, configurationDone, first stop there. */
  async function stopAtRseqLine(extra: Record<string, unknown> = {}): Promise<Stop> {
    const stopped = dc.waitForEvent('initialized', TIMEOUT);
    await launch(extra);
    await stopped;
    const bps = await setLineBreakpoints([RSEQ_LINE]);
    assert.strictEqual(bps.length, 1);
    assert.ok(bps[0].verified, `breakpoint on full_tables.c:${RSEQ_LINE} not verified: ${JSON.stringify(bps[0])}`);
    const stop = waitStopped();
    await dc.configurationDoneRequest();
    return stop;
  }

  async function regions(): Promise<Region[]> {
    const r = await dc.customRequest('rseqRegions');
    return normalizeRegions(r.body);
  }

  it('verifies and hits a breakpoint on the RSEQ-LINE; the stack has source lines', async () => {
    const { event, frames } = await stopAtRseqLine();
    assert.strictEqual(event.body.reason, 'breakpoint');
    assert.match(frames[0].name, /worker/);
    assert.strictEqual(frames[0].line, RSEQ_LINE);
    assert.strictEqual(path.resolve(frames[0].source?.path ?? ''), FULL_TABLES_C);
    assert.ok(frames.length >= 2, `one frame only: ${JSON.stringify(frames)}`);
    assert.ok(frames[0].instructionPointerReference, 'frame 0 has no instructionPointerReference');

    // A breakpoint in inc_full: its caller worker is frame 1, on a source line of its own.
    await setLineBreakpoints([FUNC_ENTRY_LINE]);
    const next = waitStopped();
    await dc.continueRequest({ threadId: event.body.threadId! });
    const s2 = await next;
    assert.match(s2.frames[0].name, /inc_full/);
    assert.strictEqual(path.resolve(s2.frames[0].source?.path ?? ''), FULL_TABLES_C);
    assert.match(s2.frames[1].name, /worker/);
    assert.strictEqual(path.resolve(s2.frames[1].source?.path ?? ''), FULL_TABLES_C);
    assert.ok(s2.frames[1].line > FUNC_ENTRY_LINE && s2.frames[1].line < RSEQ_LINE, `caller line ${s2.frames[1].line}`);
    assert.ok(s2.frames.length >= 3, 'no frame above worker (start_thread)');
  });

  it('lists the regions of full_tables with rseqRegions', async () => {
    await stopAtRseqLine();
    const rs = await regions();
    assert.ok(rs.length >= 2, JSON.stringify(rs));
    for (const r of rs) {
      assert.ok(addrValue(r.start) !== undefined && addrValue(r.commit) !== undefined, JSON.stringify(r));
      assert.ok(addrValue(r.commit)! > addrValue(r.start)!, JSON.stringify(r));
    }
    const inline = rs.find((r) => r.source && r.source.line === RSEQ_LINE);
    assert.ok(inline, `no region on full_tables.c:${RSEQ_LINE}: ${JSON.stringify(rs)}`);
    assert.strictEqual(path.resolve(inline.source!.path), FULL_TABLES_C);
    assert.ok(rs.some((r) => /rseq/i.test(r.kind)), 'no region of kind rseq');
    const stats = await dc.customRequest('rseqStats');
    assert.ok(stats.success && stats.body !== undefined, 'rseqStats');
  });

  it('next over the RSEQ-LINE takes the commit path', async () => {
    const { event } = await stopAtRseqLine();
    const threadId = event.body.threadId!;
    const next = waitStopped();
    await dc.nextRequest({ threadId });
    const s = await next;
    assert.strictEqual(s.event.body.reason, 'step');
    const text = `${s.event.body.description ?? ''} ${s.event.body.text ?? ''}`;
    assert.ok(/commit/i.test(text) || (s.frames[0].line !== RSEQ_LINE && /worker/.test(s.frames[0].name)), `after next: ${text} at ${s.frames[0].name}:${s.frames[0].line}`);
    // A real abort (preemption, migration) may happen on the way; next must
    // still end on the commit path, never in the abort handler.
    assert.ok(/committed/i.test(text) && !/aborted by the kernel/i.test(text), `next did not end on the commit path: ${text}`);
  });

  it('instruction steps through the section reach its commit, never stopping inside', async () => {
    const { event, frames } = await stopAtRseqLine();
    const threadId = event.body.threadId!;
    const region = (await regions()).find((r) => r.source && r.source.line === RSEQ_LINE);
    assert.ok(region, 'no region on the RSEQ-LINE');
    const start = addrValue(region.start)!;
    const commit = addrValue(region.commit)!;
    let pc = addrValue(frames[0].instructionPointerReference)!;
    const seen: string[] = [];
    for (let i = 0; i < 64 && pc !== commit; i++) {
      const next = waitStopped();
      await dc.stepInRequest({ threadId, granularity: 'instruction' });
      const s = await next;
      pc = addrValue(s.frames[0].instructionPointerReference)!;
      seen.push('0x' + pc.toString(16));
      assert.ok(!(pc > start && pc < commit), `stopped inside the section at 0x${pc.toString(16)} after ${seen.join(' ')}`);
    }
    assert.strictEqual(pc, commit, `never reached commit 0x${commit.toString(16)}: ${seen.join(' ')}`);
  });

  it('shows the caller\'s locals with values and the registers', async () => {
    const stopped = dc.waitForEvent('initialized', TIMEOUT);
    await launch();
    await stopped;
    assert.ok((await setLineBreakpoints([FUNC_ENTRY_LINE]))[0].verified);
    const first = waitStopped();
    await dc.configurationDoneRequest();
    const { frames } = await first;
    assert.match(frames[1].name, /worker/);
    const scopes = (await dc.scopesRequest({ frameId: frames[1].id })).body.scopes;
    const locals = scopes.find((s) => /local/i.test(s.name));
    assert.ok(locals, `no Locals scope: ${JSON.stringify(scopes)}`);
    const vars = (await dc.variablesRequest({ variablesReference: locals.variablesReference })).body.variables;
    const names = vars.map((v) => v.name);
    assert.ok(names.includes('t') || names.includes('i') || names.includes('rs'), `worker's locals: ${names.join(', ')}`);
    const valued = vars.filter((v) => v.value !== '' && !/optimi[sz]ed out|unavailable|error/i.test(v.value));
    assert.ok(valued.length > 0, `no local has a value: ${JSON.stringify(vars)}`);

    const regsScope = (await dc.scopesRequest({ frameId: frames[0].id })).body.scopes.find((s) => /regist/i.test(s.name));
    assert.ok(regsScope, 'no Registers scope');
    const regs = (await dc.variablesRequest({ variablesReference: regsScope.variablesReference })).body.variables;
    const rip = regs.find((v) => v.name === 'rip' || v.name === 'pc');
    assert.ok(rip && /^0x[0-9a-f]+/i.test(rip.value), `rip: ${JSON.stringify(regs.slice(0, 5))}`);
    assert.strictEqual(addrValue(rip.value.split(/\s/)[0]), addrValue(frames[0].instructionPointerReference));
    assert.ok(regs.some((v) => v.name === 'rsp'), 'no rsp');
  });

  it('disassembly marks the section and readMemory returns its bytes', async () => {
    await stopAtRseqLine();
    const region = (await regions()).find((r) => r.source && r.source.line === RSEQ_LINE)!;
    const start = addrValue(region.start)!;
    const commit = addrValue(region.commit)!;
    const dis = await dc.disassembleRequest({ memoryReference: '0x' + start.toString(16), instructionOffset: -2, instructionCount: 24, resolveSymbols: true });
    const ins = dis.body?.instructions ?? [];
    assert.ok(ins.length >= 10, `disassembly: ${JSON.stringify(ins.slice(0, 3))}`);
    const inSection = ins.filter((i) => addrValue(i.address)! >= start && addrValue(i.address)! <= commit);
    assert.ok(inSection.length > 0, 'no instruction of the section');
    const marked = inSection.filter((i) => /rseq|critical|restartable|commit|region/i.test(`${i.instruction} ${i.symbol ?? ''}`));
    assert.ok(marked.length > 0, `section not marked: ${JSON.stringify(inSection)}`);

    const mem = await dc.customRequest('readMemory', { memoryReference: '0x' + start.toString(16), count: Number(commit - start) });
    const body = mem.body as DebugProtocol.ReadMemoryResponse['body'];
    assert.ok(body?.data, 'readMemory returned no data');
    const bytes = Buffer.from(body.data, 'base64');
    assert.strictEqual(bytes.length, Number(commit - start));
    const fileBytes = ins.find((i) => addrValue(i.address) === start)?.instructionBytes;
    if (fileBytes) {
      const hex = fileBytes.replace(/\s+/g, '').toLowerCase();
      assert.strictEqual(bytes.subarray(0, hex.length / 2).toString('hex'), hex);
    }
  });

  it('pauses a running multi-threaded program', async () => {
    const init = dc.waitForEvent('initialized', TIMEOUT);
    await launch({}, ['4', '200000000']);
    await init;
    await dc.configurationDoneRequest();
    await new Promise((r) => setTimeout(r, 500));
    const running = (await dc.threadsRequest()).body.threads;
    const stopped = waitStopped();
    await dc.pauseRequest({ threadId: running[0].id });
    const s = await stopped;
    assert.strictEqual(s.event.body.reason, 'pause');
    assert.ok(s.frames.length > 0);
    const threads = (await dc.threadsRequest()).body.threads;
    // Workers that already finished are gone: main and at least one worker.
    assert.ok(threads.length >= 2, `main and its workers, got ${JSON.stringify(threads)}`);
    await disconnect(true);
  });

  it('stops on entry when asked, then runs to the end', async () => {
    const init = dc.waitForEvent('initialized', TIMEOUT);
    await launch({ stopOnEntry: true, vdso: false, env: { RSEQDBG_TEST: '1' } }, ['1', '10']);
    await init;
    const stopped = waitStopped();
    await dc.configurationDoneRequest();
    const s = await stopped;
    assert.strictEqual(s.event.body.reason, 'entry');
    const exited = dc.waitForEvent('exited', TIMEOUT);
    await dc.continueRequest({ threadId: s.event.body.threadId! });
    assert.strictEqual(((await exited) as DebugProtocol.ExitedEvent).body.exitCode, 0);
  });

  it('sends the program\'s output and its exit code, then terminates', async () => {
    const outputs: string[] = [];
    dc.on('output', (e: DebugProtocol.OutputEvent) => outputs.push(e.body.output));
    const init = dc.waitForEvent('initialized', TIMEOUT);
    await launch({}, ['2', '1000']);
    await init;
    const exited = dc.waitForEvent('exited', TIMEOUT);
    const terminated = dc.waitForEvent('terminated', TIMEOUT);
    await dc.configurationDoneRequest();
    const ex = (await exited) as DebugProtocol.ExitedEvent;
    await terminated;
    assert.strictEqual(ex.body.exitCode, 0);
    assert.match(outputs.join(''), /RESULT total=2000 expected=2000 commits=2000/);
  });

  it('attaches to a running fixture by pid and stops at a breakpoint', async () => {
    const child = cp.spawn(FULL_TABLES, ['1', '2000000000'], { stdio: 'ignore' });
    children.push(child);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(child.pid && child.exitCode === null, 'fixture did not start');
    const init = dc.waitForEvent('initialized', TIMEOUT);
    await dc.initializeRequest({ adapterID: 'rseqdbg', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
    await dc.attachRequest({ processId: child.pid } as DebugProtocol.AttachRequestArguments);
    await init;
    assert.ok((await setLineBreakpoints([RSEQ_LINE]))[0].verified);
    const stopped = waitStopped();
    await dc.configurationDoneRequest();
    let s = await stopped;
    // An attach may report its own first stop; the breakpoint follows on continue.
    if (s.event.body.reason !== 'breakpoint') {
      const again = waitStopped();
      await dc.continueRequest({ threadId: s.event.body.threadId! });
      s = await again;
    }
    assert.strictEqual(s.event.body.reason, 'breakpoint');
    assert.strictEqual(s.frames[0].line, RSEQ_LINE);
    await dc.setBreakpointsRequest({ source: { path: FULL_TABLES_C }, breakpoints: [] });
    await disconnect(false);
    await new Promise((r) => setTimeout(r, 300));
    assert.strictEqual(child.exitCode, null, 'the detached process died');
  });
});
