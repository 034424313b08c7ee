// rseqdbg's VS Code extension: starts `rseqdbg dap` for debug sessions of
// type rseqdbg and shows the restartable regions of the debugged program.
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import { resolveBinary } from './adapter';
import { DISASM_SCHEME, DisassemblyProvider, showRegionDisassembly } from './disassembly';
import { abortHere, AbortTestStore, CoverageDecorations, InspectState, runAbortTest, toggleInspect } from './inspect';
import { Region } from './model';
import { listProcesses } from './processes';
import { activeRseqSession, DEBUG_TYPE, RegionDecorations, RegionStore, RegionsTreeProvider } from './regionsView';

let output: vscode.OutputChannel | undefined;

class DescriptorFactory implements vscode.DebugAdapterDescriptorFactory {
  constructor(private readonly context: vscode.ExtensionContext) {}

  createDebugAdapterDescriptor(session: vscode.DebugSession): vscode.ProviderResult<vscode.DebugAdapterDescriptor> {
    const setting = vscode.workspace.getConfiguration('rseqdbg', session.workspaceFolder).get<string>('path', '');
    const bin = resolveBinary(this.context.extensionPath, setting, session.workspaceFolder?.uri.fsPath);
    output?.appendLine(`starting ${bin.path} dap (${bin.from}) for "${session.name}"`);
    return new vscode.DebugAdapterExecutable(bin.path, ['dap']);
  }
}

class ConfigurationProvider implements vscode.DebugConfigurationProvider {
  resolveDebugConfiguration(_folder: vscode.WorkspaceFolder | undefined, config: vscode.DebugConfiguration): vscode.ProviderResult<vscode.DebugConfiguration> {
    if (!config.type && !config.request && !config.name) {
      // F5 without a launch.json: debug the program built from the open C file.
      const editor = vscode.window.activeTextEditor;
      if (editor && (editor.document.languageId === 'c' || editor.document.languageId === 'cpp')) {
        return {
          type: DEBUG_TYPE,
          request: 'launch',
          name: 'rseqdbg: launch',
          program: '${fileDirname}/${fileBasenameNoExtension}',
          cwd: '${fileDirname}',
        };
      }
      return vscode.window.showInformationMessage('Add a launch configuration of type rseqdbg (program: the executable to debug).').then(() => undefined);
    }
    return config;
  }

  resolveDebugConfigurationWithSubstitutedVariables(folder: vscode.WorkspaceFolder | undefined, config: vscode.DebugConfiguration): vscode.ProviderResult<vscode.DebugConfiguration> {
    if (config.request === 'attach') {
      const pid = Number(config.processId);
      if (!Number.isInteger(pid) || pid <= 0) {
        return vscode.window.showErrorMessage(`rseqdbg: processId "${String(config.processId)}" is not a process id.`).then(() => undefined);
      }
      config.processId = pid;
      return config;
    }
    if (config.request === 'launch') {
      if (typeof config.program !== 'string' || config.program === '') {
        return vscode.window.showErrorMessage('rseqdbg: the launch configuration needs "program".').then(() => undefined);
      }
      // Relative paths are relative to cwd, and cwd to the workspace folder.
      let cwd: string | undefined = typeof config.cwd === 'string' && config.cwd !== '' ? config.cwd : undefined;
      if (cwd && !path.isAbsolute(cwd) && folder) {
        cwd = path.resolve(folder.uri.fsPath, cwd);
        config.cwd = cwd;
      }
      let program: string = config.program;
      const base = cwd ?? folder?.uri.fsPath;
      if (!path.isAbsolute(program) && base) {
        program = path.resolve(base, program);
        config.program = program;
      }
      if (!fs.existsSync(program)) {
        return vscode.window.showErrorMessage(`rseqdbg: program ${program} does not exist (build it first).`).then(() => undefined);
      }
    }
    return config;
  }
}

/** Watches what the adapter sends to refresh the regions on every stop. */
class TrackerFactory implements vscode.DebugAdapterTrackerFactory {
  constructor(
    private readonly store: RegionStore,
    private readonly inspect: InspectState,
  ) {}

  createDebugAdapterTracker(session: vscode.DebugSession): vscode.DebugAdapterTracker {
    const store = this.store;
    const inspect = this.inspect;
    return {
      onDidSendMessage(m: { type?: string; event?: string; body?: { threadId?: number } }) {
        if (m.type === 'event' && m.event === 'stopped') {
          inspect.stopped(session, m.body?.threadId);
          store.scheduleRefresh(session);
        }
      },
      onError(e: Error) {
        output?.appendLine(`adapter error: ${e.message}`);
      },
      onExit(code: number | undefined, signal: string | undefined) {
        if (code) {
          output?.appendLine(`rseqdbg dap exited with code ${code}${signal ? ` (signal ${signal})` : ''}`);
        }
      },
    };
  }
}

async function revealRegion(region: Region, sessionId: string): Promise<void> {
  if (region.source && region.source.path && fs.existsSync(region.source.path)) {
    const line = Math.max(0, region.source.line - 1);
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(region.source.path));
    const range = new vscode.Range(line, 0, line, doc.lineAt(Math.min(line, doc.lineCount - 1)).text.length);
    await vscode.window.showTextDocument(doc, { selection: range, preview: true });
    return;
  }
  await showRegionDisassembly(region, sessionId);
}

async function pickProcess(): Promise<string | undefined> {
  const items = listProcesses().map((p) => ({ label: p.comm, description: String(p.pid), detail: p.cmdline, pid: p.pid }));
  const picked = await vscode.window.showQuickPick(items, {
    title: 'Attach rseqdbg to process',
    placeHolder: 'Pick the process to attach to (name, pid or command line)',
    matchOnDescription: true,
    matchOnDetail: true,
  });
  return picked ? String(picked.pid) : undefined;
}

async function showStats(): Promise<void> {
  const session = activeRseqSession();
  if (!session) {
    void vscode.window.showInformationMessage('No rseqdbg debug session.');
    return;
  }
  try {
    const body: unknown = await session.customRequest('rseqStats');
    output?.appendLine(`region statistics of "${session.name}":`);
    output?.appendLine(JSON.stringify(body, null, 2));
    output?.show(true);
  } catch (e) {
    void vscode.window.showErrorMessage(`rseqdbg: rseqStats failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export function activate(context: vscode.ExtensionContext): void {
  output = vscode.window.createOutputChannel('rseqdbg');
  const store = new RegionStore();
  const abortTests = new AbortTestStore();
  const inspect = new InspectState();
  const tree = new RegionsTreeProvider(store, abortTests);
  const decorations = new RegionDecorations(store, context.extensionUri);
  const coverage = new CoverageDecorations(abortTests);
  const disasm = new DisassemblyProvider(abortTests);
  const binary = (folder?: vscode.WorkspaceFolder): string => {
    const setting = vscode.workspace.getConfiguration('rseqdbg', folder).get<string>('path', '');
    return resolveBinary(context.extensionPath, setting, folder?.uri.fsPath).path;
  };

  context.subscriptions.push(
    output,
    store,
    abortTests,
    inspect,
    tree,
    decorations,
    coverage,
    vscode.debug.registerDebugAdapterDescriptorFactory(DEBUG_TYPE, new DescriptorFactory(context)),
    vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, new ConfigurationProvider()),
    vscode.debug.registerDebugAdapterTrackerFactory(DEBUG_TYPE, new TrackerFactory(store, inspect)),
    vscode.window.createTreeView('rseqdbg.regions', { treeDataProvider: tree, showCollapseAll: false }),
    vscode.workspace.registerTextDocumentContentProvider(DISASM_SCHEME, disasm),
    vscode.debug.onDidStartDebugSession((s) => {
      if (s.type === DEBUG_TYPE) {
        disasm.track(s);
        inspect.started(s);
      }
    }),
    vscode.debug.onDidTerminateDebugSession((s) => {
      if (s.type === DEBUG_TYPE) {
        disasm.untrack(s);
        store.forget(s);
        inspect.ended(s);
      }
    }),
    vscode.commands.registerCommand('rseqdbg.refreshRegions', async () => {
      const s = activeRseqSession();
      if (s) {
        await store.refresh(s);
      }
    }),
    vscode.commands.registerCommand('rseqdbg.revealRegion', revealRegion),
    vscode.commands.registerCommand('rseqdbg.showStats', showStats),
    vscode.commands.registerCommand('rseqdbg.pickProcess', pickProcess),
    vscode.commands.registerCommand('rseqdbg.toggleInspect', () => toggleInspect(inspect)),
    vscode.commands.registerCommand('rseqdbg.abortHere', () => abortHere(inspect)),
    vscode.commands.registerCommand('rseqdbg.runAbortTest', () => runAbortTest(binary, abortTests, output!)),
  );
}

export function deactivate(): void {
  output = undefined;
}
