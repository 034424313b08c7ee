// Inspect mode (the rseqInspect custom request) with its status-bar item,
// forced aborts (rseqAbort), and `rseqdbg abort-test` on the current launch
// configuration, whose result the regions view, the source decorations and
// the disassembly show.
import * as cp from 'child_process';
import * as path from 'path';
import * as vscode from 'vscode';
import { AbortTestResult, abortTestArgs, coverageHover, coverageLabel, parseAbortTest, sectionsByLine } from './abortTest';
import { activeRseqSession, DEBUG_TYPE } from './regionsView';

/** Inspect mode of each rseqdbg session, and the item that shows it. */
export class InspectState implements vscode.Disposable {
  private readonly on = new Map<string, boolean>();
  /** The thread each session last stopped on. */
  private readonly stoppedThread = new Map<string, number>();
  private readonly item: vscode.StatusBarItem;
  private readonly subs: vscode.Disposable[] = [];

  constructor() {
    this.item = vscode.window.createStatusBarItem('rseqdbg.inspect', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'rseqdbg inspect mode';
    this.item.command = 'rseqdbg.toggleInspect';
    this.item.tooltip = 'rseqdbg inspect mode: on, stepping walks critical sections instruction by instruction without the kernel aborting them. Click to toggle.';
    this.subs.push(vscode.debug.onDidChangeActiveDebugSession(() => this.show()));
    this.show();
  }

  started(session: vscode.DebugSession): void {
    if (session.type === DEBUG_TYPE) {
      this.on.set(session.id, session.configuration.inspect === true);
      this.show();
    }
  }

  ended(session: vscode.DebugSession): void {
    this.on.delete(session.id);
    this.stoppedThread.delete(session.id);
    this.show();
  }

  stopped(session: vscode.DebugSession, threadId: number | undefined): void {
    if (threadId !== undefined) {
      this.stoppedThread.set(session.id, threadId);
    }
  }

  threadOf(session: vscode.DebugSession): number | undefined {
    const item = vscode.debug.activeStackItem;
    if (item && item.session.id === session.id) {
      return item.threadId;
    }
    return this.stoppedThread.get(session.id);
  }

  isOn(session: vscode.DebugSession | undefined): boolean {
    return session ? (this.on.get(session.id) ?? false) : false;
  }

  set(session: vscode.DebugSession, on: boolean): void {
    this.on.set(session.id, on);
    this.show();
  }

  show(): void {
    const s = activeRseqSession();
    if (!s) {
      this.item.hide();
      return;
    }
    this.item.text = `$(debug-step-into) rseq inspect: ${this.isOn(s) ? 'on' : 'off'}`;
    this.item.show();
  }

  dispose(): void {
    this.item.dispose();
    for (const s of this.subs) {
      s.dispose();
    }
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export async function toggleInspect(state: InspectState): Promise<void> {
  const session = activeRseqSession();
  if (!session) {
    void vscode.window.showInformationMessage('No rseqdbg debug session.');
    return;
  }
  try {
    const body = (await session.customRequest('rseqInspect', { on: !state.isOn(session) })) as { inspect?: boolean } | undefined;
    state.set(session, body?.inspect === true);
    void vscode.window.setStatusBarMessage(`rseqdbg: inspect mode ${body?.inspect ? 'on' : 'off'}`, 3000);
  } catch (e) {
    void vscode.window.showErrorMessage(`rseqdbg: inspect mode: ${message(e)}`);
  }
}

export async function abortHere(state: InspectState): Promise<void> {
  const session = activeRseqSession();
  if (!session) {
    void vscode.window.showInformationMessage('No rseqdbg debug session.');
    return;
  }
  const threadId = state.threadOf(session);
  if (threadId === undefined) {
    void vscode.window.showInformationMessage('rseqdbg: no stopped thread to abort.');
    return;
  }
  try {
    await session.customRequest('rseqAbort', { threadId });
  } catch (e) {
    void vscode.window.showErrorMessage(`rseqdbg: abort refused: ${message(e)}`);
  }
}

/** The latest abort-test result, for the views that show it. */
export class AbortTestStore implements vscode.Disposable {
  private latest: AbortTestResult | undefined;
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;

  get result(): AbortTestResult | undefined {
    return this.latest;
  }

  set(r: AbortTestResult): void {
    this.latest = r;
    void vscode.commands.executeCommand('setContext', 'rseqdbg.abortTestDone', true);
    this.emitter.fire();
  }

  dispose(): void {
    this.emitter.dispose();
  }
}

/** The launch configuration abort-test runs: the active session's, else one of launch.json's. */
async function pickConfiguration(): Promise<{ config: vscode.DebugConfiguration; folder?: vscode.WorkspaceFolder } | undefined> {
  const s = activeRseqSession();
  if (s && s.configuration.request === 'launch') {
    return { config: s.configuration, folder: s.workspaceFolder };
  }
  const found: { config: vscode.DebugConfiguration; folder?: vscode.WorkspaceFolder }[] = [];
  for (const folder of vscode.workspace.workspaceFolders ?? []) {
    const configs = vscode.workspace.getConfiguration('launch', folder.uri).get<vscode.DebugConfiguration[]>('configurations', []);
    for (const c of configs) {
      if (c.type === DEBUG_TYPE && c.request === 'launch') {
        found.push({ config: c, folder });
      }
    }
  }
  if (found.length <= 1) {
    return found[0];
  }
  const picked = await vscode.window.showQuickPick(
    found.map((f) => ({ label: String(f.config.name), description: String(f.config.program), f })),
    { title: 'Run rseqdbg abort-test on' },
  );
  return picked?.f;
}

/** ${workspaceFolder} and friends in a launch configuration's strings. */
function substitute(v: string, folder?: vscode.WorkspaceFolder): string {
  const ws = folder?.uri.fsPath ?? '';
  const file = vscode.window.activeTextEditor?.document.uri.fsPath ?? '';
  return v
    .replace(/\$\{workspaceFolder\}/g, ws)
    .replace(/\$\{fileDirname\}/g, path.dirname(file))
    .replace(/\$\{fileBasenameNoExtension\}/g, path.basename(file, path.extname(file)))
    .replace(/\$\{env:([^}]+)\}/g, (_m, n: string) => process.env[n] ?? '');
}

export async function runAbortTest(binary: (folder?: vscode.WorkspaceFolder) => string, store: AbortTestStore, output: vscode.OutputChannel): Promise<void> {
  const picked = await pickConfiguration();
  if (!picked) {
    void vscode.window.showInformationMessage('rseqdbg: no launch configuration of type rseqdbg to run abort-test on.');
    return;
  }
  const { config, folder } = picked;
  let args: string[];
  let bin: string;
  try {
    const raw: unknown = config.args;
    const list: unknown[] = Array.isArray(raw) ? raw : [];
    args = abortTestArgs({ program: substitute(String(config.program ?? ''), folder), args: list.map((a) => substitute(String(a), folder)) });
    bin = binary(folder);
  } catch (e) {
    void vscode.window.showErrorMessage(`rseqdbg: abort-test: ${message(e)}`);
    return;
  }
  const cwd = typeof config.cwd === 'string' && config.cwd !== '' ? substitute(config.cwd, folder) : folder?.uri.fsPath;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries((config.env ?? {}) as Record<string, string | null>)) {
    if (v === null) {
      delete env[k];
    } else {
      env[k] = substitute(String(v), folder);
    }
  }
  output.appendLine(`$ ${bin} ${args.join(' ')}`);
  const text = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `rseqdbg abort-test: ${path.basename(args[3])}`, cancellable: true },
    (_p, token) =>
      new Promise<string>((resolve) => {
        const child = cp.execFile(bin, args, { cwd, env, maxBuffer: 256 << 20 }, (_err, stdout, stderr) => {
          if (stderr) {
            output.appendLine(stderr.trimEnd());
          }
          resolve(stdout);
        });
        token.onCancellationRequested(() => child.kill('SIGTERM'));
      }),
  );
  const result = parseAbortTest(text);
  store.set(result);
  for (const s of result.sections) {
    output.appendLine(`${s.name}: ${coverageLabel(s).replace(/^abort-test: /, '')}, ${s.entries} entries, ${s.injected} aborts injected`);
  }
  if (result.error) {
    output.appendLine(result.error);
    void vscode.window.showErrorMessage(`rseqdbg abort-test: ${result.error}`);
    return;
  }
  const f = result.failure;
  if (f) {
    output.appendLine(`FAILED: ${f.section} aborted after ${f.k} instructions: ${f.ending} (run ${f.run}, --seed ${f.seed})`);
    void vscode.window.showErrorMessage(`rseqdbg abort-test: ${f.section} fails when aborted after ${f.k} instructions (${f.ending}; --seed ${f.seed}).`);
  } else {
    const covered = result.sections.reduce((n, s) => n + s.covered, 0);
    const total = result.sections.reduce((n, s) => n + s.total, 0);
    void vscode.window.showInformationMessage(`rseqdbg abort-test passed: ${covered}/${total} abort positions covered in ${result.sections.length} sections.`);
  }
  output.show(true);
}

/** Coverage marks on the source lines of the sections abort-test ran. */
export class CoverageDecorations implements vscode.Disposable {
  private readonly ok: vscode.TextEditorDecorationType;
  private readonly bad: vscode.TextEditorDecorationType;
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly store: AbortTestStore) {
    const after = (color: string) => ({ color: new vscode.ThemeColor(color), margin: '0 0 0 2em' });
    this.ok = vscode.window.createTextEditorDecorationType({ after: after('testing.iconPassed') });
    this.bad = vscode.window.createTextEditorDecorationType({
      isWholeLine: true,
      backgroundColor: new vscode.ThemeColor('rseqdbg.abortTestFailureBackground'),
      overviewRulerColor: new vscode.ThemeColor('testing.iconFailed'),
      overviewRulerLane: vscode.OverviewRulerLane.Right,
      after: after('testing.iconFailed'),
    });
    this.subs.push(store.onDidChange(() => this.update()));
    this.subs.push(vscode.window.onDidChangeVisibleTextEditors(() => this.update()));
  }

  update(): void {
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document.uri.scheme !== 'file') {
        continue;
      }
      const ok: vscode.DecorationOptions[] = [];
      const bad: vscode.DecorationOptions[] = [];
      for (const [line, ss] of sectionsByLine(this.store.result, editor.document.uri.fsPath, (p) => path.resolve(p))) {
        if (line > editor.document.lineCount) {
          continue;
        }
        const failing = ss.some((s) => s.failing.length > 0);
        const opt: vscode.DecorationOptions = {
          range: editor.document.lineAt(line - 1).range,
          hoverMessage: new vscode.MarkdownString(ss.map((s) => coverageHover(s, this.store.result?.failure)).join('\n\n---\n\n')),
          renderOptions: { after: { contentText: `${failing ? '✗' : '✓'} ${ss.map(coverageLabel).join('; ')}` } },
        };
        (failing ? bad : ok).push(opt);
      }
      editor.setDecorations(this.ok, ok);
      editor.setDecorations(this.bad, bad);
    }
  }

  dispose(): void {
    this.ok.dispose();
    this.bad.dispose();
    for (const s of this.subs) {
      s.dispose();
    }
  }
}
