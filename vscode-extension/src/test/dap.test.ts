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
import { addrValue, hexAddr, normalizeRegions, Region } from '../model';

const REPO = path.resolve(__dirname, '..', '..', '..');
const BINARY = process.env.RSEQDBG_BINARY ?? path.join(REPO, 'rseqdbg');
const FIXTURES = path.join(REPO, 'tests', 'fixtures');
const FULL_TABLES = path.join(FIXTURES, 'build', 'full_tables');
const FULL_TABLES_C = path.join(FIXTURES, 'full_tables.c');
const FIXTURE_COMMON_C = path.join(FIXTURES, 'fixture_common.c');
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

/** The state letter of a thread in /proc (t: stopped by the tracer). */
function threadState(pid: number, tid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
}

/** How many threads process pid has. */
function taskCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

/** The pid tracing process pid, 0 when none. */
function tracerOf(pid: number): number {
  const m = /^TracerPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : -1;
}

async function waitFor(what: string, cond: () => boolean): Promise<void> {
  for (const end = Date.now() + TIMEOUT; !cond(); await new Promise((r) => setTimeout(r, 10))) {
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
  }
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
const CALL_LINE = markerLine(FULL_TABLES_C, 't->commits += inc_full(');

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

  /** Launch, break on the RSEQ-LINE (when condition holds), configurationDone, first stop there. */
  async function stopAtRseqLine(extra: Record<string, unknown> = {}, condition?: string): Promise<Stop> {
    const stopped = dc.waitForEvent('initialized', TIMEOUT);
    const { args, ...rest } = extra;
    await launch(rest, (args as string[] | undefined) ?? ['1', '200']);
    await stopped;
    const bps = (await dc.setBreakpointsRequest({ source: { path: FULL_TABLES_C }, breakpoints: [{ line: RSEQ_LINE, condition }] })).body.breakpoints;
    assert.strictEqual(bps.length, 1);
    assert.ok(bps[0].verified, `breakpoint on full_tables.c:${RSEQ_LINE} not verified: ${JSON.stringify(bps[0])}`);
    const stop = waitStopped();
    await dc.configurationDoneRequest();
    return stop;
  }

  /** Sum of the per-CPU counters: fixture_counters is 256 slots of 64 bytes, a long count first. */
  async function counterSum(frameId: number): Promise<bigint> {
    const ev = await dc.evaluateRequest({ expression: 'fixture_counters', frameId, context: 'watch' });
    assert.ok(ev.body.memoryReference, `fixture_counters has no memory reference: ${JSON.stringify(ev.body)}`);
    const mem = await dc.customRequest('readMemory', { memoryReference: ev.body.memoryReference, count: 256 * 64 });
    const body = mem.body as DebugProtocol.ReadMemoryResponse['body'];
    const data = Buffer.from(body?.data ?? '', 'base64');
    assert.strictEqual(data.length, 256 * 64, `readMemory gave ${data.length} bytes`);
    let sum = 0n;
    for (let i = 0; i < 256; i++) {
      sum += data.readBigInt64LE(i * 64);
    }
    return sum;
  }

  async function regions(): Promise<Region[]> {
    const r = await dc.customRequest('rseqRegions');
    return normalizeRegions(r.body);
  }

  it('verifies and hits a breakpoint on the RSEQ-LINE; the stack reaches main with source lines', async () => {
    // --main: the worker runs on the main thread, so its stack goes through
    // fixture_thread_start and fixture_main to main.
    const { event, frames } = await stopAtRseqLine({ args: ['1', '200', '--main'] });
    assert.strictEqual(event.body.reason, 'breakpoint');
    const want: [RegExp, string, number][] = [
      [/^worker/, FULL_TABLES_C, RSEQ_LINE],
      [/^fixture_thread_start/, FIXTURE_COMMON_C, markerLine(FIXTURE_COMMON_C, 'return fixture_worker(arg);')],
      [/^fixture_main/, FIXTURE_COMMON_C, markerLine(FIXTURE_COMMON_C, 'fixture_thread_start(&ts[0]);')],
      [/^main\b/, FULL_TABLES_C, markerLine(FULL_TABLES_C, 'return fixture_main(')],
    ];
    const shown = frames.map((f) => `${f.name} ${f.source?.path ?? '?'}:${f.line}`).join(' <- ');
    assert.ok(frames.length >= want.length, `stack too short: ${shown}`);
    want.forEach(([name, file, line], i) => {
      const f = frames[i];
      assert.match(f.name, name, `frame ${i}: ${shown}`);
      assert.strictEqual(path.resolve(f.source?.path ?? ''), file, `frame ${i} source: ${shown}`);
      assert.strictEqual(f.line, line, `frame ${i} line: ${shown}`);
      assert.ok(f.instructionPointerReference, `frame ${i} has no instructionPointerReference`);
    });

    // A breakpoint in inc_full: its caller worker is frame 1, on the line of the call.
    await setLineBreakpoints([FUNC_ENTRY_LINE]);
    const next = waitStopped();
    await dc.continueRequest({ threadId: event.body.threadId! });
    const s2 = await next;
    assert.match(s2.frames[0].name, /inc_full/);
    assert.strictEqual(path.resolve(s2.frames[0].source?.path ?? ''), FULL_TABLES_C);
    assert.match(s2.frames[1].name, /worker/);
    assert.strictEqual(s2.frames[1].line, CALL_LINE);
    assert.ok(s2.frames.some((f) => /^main\b/.test(f.name) && f.line > 0), 'main is not on the stack of inc_full');
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
    // Without the breakpoint, so nothing but the step ends the step.
    await setLineBreakpoints([]);
    const next = waitStopped();
    await dc.nextRequest({ threadId });
    const s = await next;
    // A real abort (preemption, migration) may happen on the way: the
    // section is retried, and next still ends on the commit path.
    assert.strictEqual(s.event.body.reason, 'step');
    assert.strictEqual(s.event.body.description, 'critical section committed', JSON.stringify(s.event.body));
    assert.match(s.frames[0].name, /^worker/);
    assert.notStrictEqual(s.frames[0].line, RSEQ_LINE, 'next stayed on the line');
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
    let last: DebugProtocol.StoppedEvent | undefined;
    for (let i = 0; i < 64 && pc !== commit; i++) {
      const next = waitStopped();
      await dc.stepInRequest({ threadId, granularity: 'instruction' });
      const s = await next;
      last = s.event;
      pc = addrValue(s.frames[0].instructionPointerReference)!;
      seen.push('0x' + pc.toString(16));
      assert.ok(!(pc > start && pc < commit), `stopped inside the section at 0x${pc.toString(16)} after ${seen.join(' ')}`);
    }
    assert.strictEqual(pc, commit, `never reached commit 0x${commit.toString(16)}: ${seen.join(' ')}`);
    assert.strictEqual(last?.body.description, 'critical section committed', JSON.stringify(last?.body));
    const stats = (await dc.customRequest('rseqStats')).body as { stepsInside: number; commits: number };
    assert.strictEqual(stats.stepsInside, 0, 'a hardware step started inside the section');
  });

  it('shows the caller\'s locals with their values, and the registers', async () => {
    const stopped = dc.waitForEvent('initialized', TIMEOUT);
    await launch({}, ['1', '200', '--main']);
    await stopped;
    // The third call of inc_full: odd iterations call it, so worker's i is 5.
    const bps = await dc.setBreakpointsRequest({ source: { path: FULL_TABLES_C }, breakpoints: [{ line: FUNC_ENTRY_LINE, hitCondition: '3' }] });
    assert.ok(bps.body.breakpoints[0].verified);
    const first = waitStopped();
    await dc.configurationDoneRequest();
    const { frames } = await first;
    assert.match(frames[0].name, /^inc_full/);
    assert.match(frames[1].name, /^worker/);
    const scopes = (await dc.scopesRequest({ frameId: frames[1].id })).body.scopes;
    const locals = scopes.find((s) => s.name === 'Locals');
    assert.ok(locals, `no Locals scope: ${JSON.stringify(scopes)}`);
    const vars = (await dc.variablesRequest({ variablesReference: locals.variablesReference })).body.variables;
    const byName = new Map(vars.map((v) => [v.name, v]));
    assert.strictEqual(byName.get('i')?.value, '5', `worker's locals: ${JSON.stringify(vars)}`);
    const t = byName.get('t');
    assert.ok(t && /^0x[0-9a-f]+/.test(t.value) && t.variablesReference > 0, `t: ${JSON.stringify(t)}`);
    // t->iterations is the n of the loop.
    const n = await dc.evaluateRequest({ expression: 't->iterations', frameId: frames[1].id, context: 'watch' });
    assert.strictEqual(n.body.result, '200');

    const regsScope = (await dc.scopesRequest({ frameId: frames[0].id })).body.scopes.find((s) => s.name === 'Registers');
    assert.ok(regsScope, 'no Registers scope');
    const regs = (await dc.variablesRequest({ variablesReference: regsScope.variablesReference })).body.variables;
    const rip = regs.find((v) => v.name === 'rip');
    assert.ok(rip && /^0x[0-9a-f]+/i.test(rip.value), `rip: ${JSON.stringify(regs.slice(0, 5))}`);
    assert.strictEqual(addrValue(rip.value.split(/\s/)[0]), addrValue(frames[0].instructionPointerReference));
    for (const name of ['rsp', 'rdi', 'eflags', 'fs_base']) {
      assert.ok(regs.some((v) => v.name === name && v.value !== ''), `no ${name} among ${regs.map((v) => v.name).join(' ')}`);
    }
    // inc_full's first argument is the thread's rseq area, in rdi.
    const rdi = regs.find((v) => v.name === 'rdi')!;
    const rs = await dc.evaluateRequest({ expression: 'rs', frameId: frames[0].id, context: 'watch' });
    assert.strictEqual(addrValue(rdi.value.split(/\s/)[0]), addrValue(rs.body.result.split(/\s/)[0]));
  });

  /** Sends a request and resolves with its response, failed or not. */
  function rawRequest(command: string, args: unknown): Promise<DebugProtocol.Response> {
    return new Promise((resolve) => (dc as unknown as { doSend(c: string, a: unknown, cb: (r: DebugProtocol.Response) => void): void }).doSend(command, args, resolve));
  }

  it('tells the user about failures of what they started, not of hovers', async () => {
    const { frames } = await stopAtRseqLine();
    // VS Code turns showUser into a notification: a hover over a word that
    // is no variable must fail quietly.
    const hover = (await rawRequest('evaluate', { expression: 'INC_FULL_ASM', frameId: frames[0].id, context: 'hover' })) as DebugProtocol.ErrorResponse;
    assert.strictEqual(hover.success, false);
    assert.ok(hover.body?.error && !hover.body.error.showUser, `hover error: ${JSON.stringify(hover)}`);
    const set = (await rawRequest('setVariable', { variablesReference: 999999, name: 'i', value: '1' })) as DebugProtocol.ErrorResponse;
    assert.strictEqual(set.success, false);
    assert.strictEqual(set.body?.error?.showUser, true, `setVariable error: ${JSON.stringify(set)}`);
  });

  it('disassembly marks the section\'s start, commit and abort handler', async () => {
    await stopAtRseqLine();
    const region = (await regions()).find((r) => r.source && r.source.line === RSEQ_LINE)!;
    const start = addrValue(region.start)!;
    const commit = addrValue(region.commit)!;
    const dis = await dc.disassembleRequest({ memoryReference: '0x' + start.toString(16), instructionOffset: -2, instructionCount: 24, resolveSymbols: true });
    const ins = dis.body?.instructions ?? [];
    assert.ok(ins.length === 24, `disassembly: ${JSON.stringify(ins.slice(0, 3))}`);
    const at = (a: bigint) => ins.find((i) => addrValue(i.address) === a);
    assert.match(at(start)?.instruction ?? '', /critical section.*start/, `start: ${JSON.stringify(at(start))}`);
    assert.match(at(commit)?.instruction ?? '', /commit/, `commit: ${JSON.stringify(at(commit))}`);
    const inside = ins.filter((i) => addrValue(i.address)! > start && addrValue(i.address)! < commit);
    assert.ok(inside.length > 0 && inside.every((i) => /inside rseq/.test(i.instruction)), `inside: ${JSON.stringify(inside)}`);
    const handler = await dc.disassembleRequest({ memoryReference: hexAddr(region.abort), instructionCount: 1 });
    assert.match(handler.body?.instructions[0].instruction ?? '', /abort handler/);

    // readMemory at the section gives the bytes the disassembly decoded.
    const mem = await dc.customRequest('readMemory', { memoryReference: '0x' + start.toString(16), count: Number(commit - start) });
    const bytes = Buffer.from((mem.body as DebugProtocol.ReadMemoryResponse['body'])!.data!, 'base64');
    assert.strictEqual(bytes.length, Number(commit - start));
    const hex = (at(start)?.instructionBytes ?? '').replace(/\s+/g, '').toLowerCase();
    assert.ok(hex.length > 0, 'no instruction bytes');
    assert.strictEqual(bytes.subarray(0, hex.length / 2).toString('hex'), hex);
  });

  it('readMemory returns the per-CPU counters, which sum to the iterations done', async () => {
    const { event, frames } = await stopAtRseqLine({ args: ['1', '200', '--main'] }, 'i == 40');
    assert.strictEqual(await counterSum(frames[0].id), 40n, 'iterations 0-39 committed once each');
    const next = waitStopped();
    await setLineBreakpoints([]);
    await dc.nextRequest({ threadId: event.body.threadId! });
    const s = await next;
    assert.strictEqual(s.event.body.description, 'critical section committed');
    assert.strictEqual(await counterSum(s.frames[0].id), 41n, 'the section of iteration 40 added one');
  });

  it('pause stops every thread of a running multi-threaded program', async () => {
    const init = dc.waitForEvent('initialized', TIMEOUT);
    const proc = dc.waitForEvent('process', TIMEOUT) as Promise<DebugProtocol.ProcessEvent>;
    // Iterations enough for minutes: no worker ends before the pause.
    await launch({}, ['4', '2000000000']);
    const pid = (await proc).body.systemProcessId!;
    await init;
    await dc.configurationDoneRequest();
    // While it runs, threads lists main and the four workers it started.
    let running: DebugProtocol.Thread[] = [];
    for (const end = Date.now() + TIMEOUT; running.length !== 5; await new Promise((r) => setTimeout(r, 20))) {
      assert.ok(Date.now() < end, `threads while running: ${JSON.stringify(running)}`);
      running = (await dc.threadsRequest()).body.threads;
    }
    assert.strictEqual(running[0].id, pid, 'the main thread comes first');
    const stopped = waitStopped();
    await dc.pauseRequest({ threadId: pid });
    const s = await stopped;
    assert.strictEqual(s.event.body.reason, 'pause');
    assert.strictEqual(s.event.body.allThreadsStopped, true);
    const threads = (await dc.threadsRequest()).body.threads;
    assert.strictEqual(threads.length, 5, JSON.stringify(threads));
    for (const th of threads) {
      assert.strictEqual(threadState(pid, th.id), 't', `thread ${th.id} is not in a traced stop`);
      const st = await dc.stackTraceRequest({ threadId: th.id, levels: 20 });
      assert.ok(st.body.stackFrames.length > 0, `thread ${th.id} has no frames`);
    }
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

  /** Launch full_tables in inspect mode with an instruction breakpoint on inc_full's section start. */
  async function stopAtSectionStart(args: string[], inspect: boolean): Promise<{ stop: Stop; region: Region }> {
    const init = dc.waitForEvent('initialized', TIMEOUT);
    await launch({ inspect }, args);
    await init;
    const region = (await regions()).find((r) => r.kind === 'rseq' && r.name.startsWith('inc_full'));
    assert.ok(region, 'no inc_full section');
    await dc.customRequest('setInstructionBreakpoints', { breakpoints: [{ instructionReference: hexAddr(region.start) }] });
    const stop = waitStopped();
    await dc.configurationDoneRequest();
    return { stop: await stop, region };
  }

  it('in inspect mode, instruction steps walk the section to its commit with 4 threads under signals', async () => {
    const outputs: string[] = [];
    dc.on('output', (e: DebugProtocol.OutputEvent) => outputs.push(e.body.output));
    let pid = 0;
    dc.on('process', (e: DebugProtocol.ProcessEvent) => (pid = e.body.systemProcessId ?? 0));
    const { stop, region } = await stopAtSectionStart(['4', '300', '--signals'], true);
    const affinity = (tid: number): string => /^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? '?';
    const before = affinity(stop.event.body.threadId!);
    const start = addrValue(region.start)!;
    const commit = addrValue(region.commit)!;
    const abort = addrValue(region.abort)!;
    const len = Number(commit - start);
    assert.strictEqual(stop.event.body.description, `inspecting critical section ${region.name} at +0 of ${len}`, JSON.stringify(stop.event.body));
    const threadId = stop.event.body.threadId!;
    const rseqCS = async (frameId: number): Promise<string> => (await dc.evaluateRequest({ expression: 'rs->rseq_cs', frameId, context: 'watch' })).body.result;
    const cs = await rseqCS(stop.frames[0].id);
    assert.ok(cs !== '0' && cs !== '', `rseq_cs at the section start: ${cs}`);
    let pc = start;
    let last = 0;
    const seen: string[] = [];
    for (let i = 0; i < 64 && pc !== commit; i++) {
      const next = waitStopped();
      await dc.stepInRequest({ threadId, granularity: 'instruction' });
      const s = await next;
      pc = addrValue(s.frames[0].instructionPointerReference)!;
      seen.push('0x' + pc.toString(16));
      assert.strictEqual(s.event.body.threadId, threadId, 'another thread stopped during the walk');
      if (pc === commit) {
        break;
      }
      // The section's own cpu check (its first instructions) may branch to
      // the handler when the thread moved before the section began.
      assert.ok(pc !== abort || last <= 3, `aborted at +${last}: ${seen.join(' ')}`);
      if (pc === abort) {
        return;
      }
      const k = Number(pc - start);
      assert.ok(k > last && k < len, `stop at +${k} after +${last}: ${seen.join(' ')}`);
      assert.match(affinity(threadId), /^\d+$/, 'the inspected thread is not pinned to one CPU');
      assert.strictEqual(await rseqCS(s.frames[0].id), cs, `rseq_cs at +${k}`);
      assert.strictEqual(s.event.body.description, `inspecting critical section ${region.name} at +${k} of ${len}`);
      last = k;
    }
    assert.strictEqual(pc, commit, `never reached the commit: ${seen.join(' ')}`);
    assert.strictEqual(affinity(threadId), before, 'the thread did not get its affinity back at the commit');
    const stats = (await dc.customRequest('rseqStats')).body as { stepsInside: number; inspectedSteps: number };
    assert.strictEqual(stats.stepsInside, 0);
    assert.ok(stats.inspectedSteps >= 3, JSON.stringify(stats));
    await dc.customRequest('setInstructionBreakpoints', { breakpoints: [] });
    const exited = dc.waitForEvent('exited', TIMEOUT);
    const terminated = dc.waitForEvent('terminated', TIMEOUT);
    await dc.continueRequest({ threadId });
    assert.strictEqual(((await exited) as DebugProtocol.ExitedEvent).body.exitCode, 0);
    await terminated;
    assert.match(outputs.join(''), /RESULT total=1200 expected=1200 /);
  });

  it('rseqAbort moves the thread to the abort handler, which counts one abort; rseqInspect turns the mode off', async () => {
    const outputs: string[] = [];
    dc.on('output', (e: DebugProtocol.OutputEvent) => outputs.push(e.body.output));
    const { stop, region } = await stopAtSectionStart(['1', '100'], false);
    const threadId = stop.event.body.threadId!;
    assert.deepStrictEqual((await dc.customRequest('rseqInspect', { on: true })).body, { inspect: true });
    const stepped = waitStopped();
    await dc.stepInRequest({ threadId, granularity: 'instruction' });
    const s1 = await stepped;
    const k = Number(addrValue(s1.frames[0].instructionPointerReference)! - addrValue(region.start)!);
    assert.match(s1.event.body.description ?? '', /^inspecting critical section /);
    const aborted = waitStopped();
    await dc.customRequest('rseqAbort', { threadId });
    const s2 = await aborted;
    assert.strictEqual(s2.event.body.description, `forced abort of ${region.name} at +${k}: in the abort handler`);
    assert.strictEqual(addrValue(s2.frames[0].instructionPointerReference), addrValue(region.abort));
    await assert.rejects(dc.customRequest('rseqAbort', { threadId }), /not inside a critical section/);
    assert.deepStrictEqual((await dc.customRequest('rseqInspect', { on: false })).body, { inspect: false });
    const stats = (await dc.customRequest('rseqStats')).body as { forcedAborts: number };
    assert.strictEqual(stats.forcedAborts, 1);
    await dc.customRequest('setInstructionBreakpoints', { breakpoints: [] });
    const exited = dc.waitForEvent('exited', TIMEOUT);
    const terminated = dc.waitForEvent('terminated', TIMEOUT);
    await dc.continueRequest({ threadId });
    assert.strictEqual(((await exited) as DebugProtocol.ExitedEvent).body.exitCode, 0);
    await terminated;
    assert.match(outputs.join(''), /RESULT total=100 expected=100 commits=100 aborts=[1-9]/);
  });

  it('attaches to a running fixture by pid and stops at a breakpoint', async () => {
    const child = cp.spawn(FULL_TABLES, ['1', '2000000000'], { stdio: 'ignore' });
    children.push(child);
    // Attach once the worker runs, so the attach meets a program at work.
    for (const end = Date.now() + TIMEOUT; !child.pid || taskCount(child.pid) < 2; await new Promise((r) => setTimeout(r, 10))) {
      assert.ok(Date.now() < end && child.exitCode === null, 'the fixture\'s worker did not start');
    }
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
    // Detached: it runs on (2e9 iterations), untraced.
    assert.strictEqual(child.exitCode, null, 'the detached process died');
    await waitFor('the detach', () => tracerOf(child.pid!) === 0);
    assert.strictEqual(child.exitCode, null, 'the detached process died');
  });
});
