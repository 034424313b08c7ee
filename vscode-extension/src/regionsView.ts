// The Restartable Regions view (Run and Debug container) and the editor
// decorations on the source lines that hold a critical section. Both show
// the regions of the active rseqdbg debug session, fetched with the
// `rseqRegions` custom request whenever the session stops.
import * as path from 'path';
import * as vscode from 'vscode';
import { AbortSection, coverageHover, coverageLabel, sectionOfRegion } from './abortTest';
import { normalizeRegions, objectsOf, Region, regionDescription, regionHover, regionLabel, regionsByLine } from './model';

/** What the tree needs of the latest abort-test result (inspect.ts's AbortTestStore). */
export interface AbortTestSource {
  readonly result: import('./abortTest').AbortTestResult | undefined;
  readonly onDidChange: vscode.Event<void>;
}

export const DEBUG_TYPE = 'rseqdbg';

type Node = ObjectNode | RegionNode | MessageNode | SectionNode;

/** A section of the latest abort-test run, listed when no session runs. */
interface SectionNode {
  type: 'section';
  section: AbortSection;
}

interface ObjectNode {
  type: 'object';
  object: string;
  regions: Region[];
}

interface RegionNode {
  type: 'region';
  region: Region;
  sessionId: string;
}

interface MessageNode {
  type: 'message';
  text: string;
}

/** Regions of each rseqdbg session, refreshed on stops. */
export class RegionStore implements vscode.Disposable {
  private readonly bySession = new Map<string, Region[]>();
  private readonly errors = new Map<string, string>();
  private readonly pending = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;

  regions(session: vscode.DebugSession | undefined): Region[] {
    return session ? (this.bySession.get(session.id) ?? []) : [];
  }

  error(session: vscode.DebugSession | undefined): string | undefined {
    return session ? this.errors.get(session.id) : undefined;
  }

  has(session: vscode.DebugSession | undefined): boolean {
    return session !== undefined && this.bySession.has(session.id);
  }

  /** Asks the adapter for the session's regions soon (stops come in bursts: one per thread). */
  scheduleRefresh(session: vscode.DebugSession, delayMs = 50): void {
    const old = this.pending.get(session.id);
    if (old) {
      clearTimeout(old);
    }
    this.pending.set(
      session.id,
      setTimeout(() => {
        this.pending.delete(session.id);
        void this.refresh(session);
      }, delayMs),
    );
  }

  async refresh(session: vscode.DebugSession): Promise<void> {
    if (session.type !== DEBUG_TYPE) {
      return;
    }
    try {
      this.bySession.set(session.id, normalizeRegions(await session.customRequest('rseqRegions')));
      this.errors.delete(session.id);
    } catch (e) {
      // The session may be gone, or not yet have a process.
      this.errors.set(session.id, e instanceof Error ? e.message : String(e));
    }
    this.emitter.fire();
  }

  forget(session: vscode.DebugSession): void {
    const t = this.pending.get(session.id);
    if (t) {
      clearTimeout(t);
      this.pending.delete(session.id);
    }
    this.bySession.delete(session.id);
    this.errors.delete(session.id);
    this.emitter.fire();
  }

  dispose(): void {
    for (const t of this.pending.values()) {
      clearTimeout(t);
    }
    this.emitter.dispose();
  }
}

/** The active debug session if it is an rseqdbg one. */
export function activeRseqSession(): vscode.DebugSession | undefined {
  const s = vscode.debug.activeDebugSession;
  return s && s.type === DEBUG_TYPE ? s : undefined;
}

export class RegionsTreeProvider implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  private readonly subs: vscode.Disposable[] = [];

  constructor(
    private readonly store: RegionStore,
    private readonly abortTests?: AbortTestSource,
  ) {
    this.subs.push(store.onDidChange(() => this.emitter.fire(undefined)));
    if (abortTests) {
      this.subs.push(abortTests.onDidChange(() => this.emitter.fire(undefined)));
    }
    this.subs.push(vscode.debug.onDidChangeActiveDebugSession(() => this.emitter.fire(undefined)));
  }

  getChildren(element?: Node): Node[] {
    const session = activeRseqSession();
    if (!element) {
      if (!session) {
        const result = this.abortTests?.result;
        if (result && result.sections.length > 0) {
          return result.sections.map((section) => ({ type: 'section', section }));
        }
        return [{ type: 'message', text: 'No rseqdbg session.' }];
      }
      const regions = this.store.regions(session);
      if (regions.length === 0) {
        const err = this.store.error(session);
        if (err) {
          return [{ type: 'message', text: `Regions unavailable: ${err}` }];
        }
        return [{ type: 'message', text: this.store.has(session) ? 'No restartable regions in the loaded objects.' : 'Regions are listed when the program stops.' }];
      }
      const objects = objectsOf(regions);
      if (objects.length <= 1) {
        return regions.map((region) => ({ type: 'region', region, sessionId: session.id }));
      }
      return objects.map((object) => ({ type: 'object', object, regions: regions.filter((r) => (r.object || '') === object) }));
    }
    if (element.type === 'object' && session) {
      return element.regions.map((region) => ({ type: 'region', region, sessionId: session.id }));
    }
    return [];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    switch (node.type) {
      case 'message': {
        const item = new vscode.TreeItem(node.text, vscode.TreeItemCollapsibleState.None);
        item.contextValue = 'message';
        return item;
      }
      case 'object': {
        const item = new vscode.TreeItem(path.basename(node.object) || '(unknown object)', vscode.TreeItemCollapsibleState.Expanded);
        item.description = `${node.regions.length} region${node.regions.length === 1 ? '' : 's'}`;
        item.tooltip = node.object;
        item.iconPath = new vscode.ThemeIcon('file-binary');
        item.contextValue = 'object';
        return item;
      }
      case 'section': {
        const s = node.section;
        const item = new vscode.TreeItem(s.name, vscode.TreeItemCollapsibleState.None);
        item.description = coverageLabel(s).replace(/^abort-test: /, '') + (s.file ? `  ${path.basename(s.file)}:${s.line}` : '');
        item.tooltip = new vscode.MarkdownString(coverageHover(s, this.abortTests?.result?.failure));
        item.iconPath = new vscode.ThemeIcon(s.failing.length > 0 ? 'error' : 'pass');
        item.contextValue = 'abortTestSection';
        return item;
      }
      case 'region': {
        const r = node.region;
        const item = new vscode.TreeItem(regionLabel(r), vscode.TreeItemCollapsibleState.None);
        const cov = sectionOfRegion(this.abortTests?.result, r);
        item.description = regionDescription(r) + (r.source ? `  ${path.basename(r.source.path)}:${r.source.line}` : '') + (cov ? `  ${coverageLabel(cov)}` : '');
        item.tooltip = new vscode.MarkdownString(regionHover(r) + (cov ? '\n\n' + coverageHover(cov, this.abortTests?.result?.failure) : ''));
        item.iconPath = new vscode.ThemeIcon(cov && cov.failing.length > 0 ? 'error' : r.kind === 'vdso' ? 'symbol-method' : 'sync');
        item.contextValue = 'region';
        item.command = { command: 'rseqdbg.revealRegion', title: 'Reveal Region', arguments: [r, node.sessionId] };
        return item;
      }
    }
  }

  dispose(): void {
    this.emitter.dispose();
    for (const s of this.subs) {
      s.dispose();
    }
  }
}

/** Gutter icon, background and hover on the lines holding a critical section. */
export class RegionDecorations implements vscode.Disposable {
  private readonly type: vscode.TextEditorDecorationType;
  private readonly subs: vscode.Disposable[] = [];

  constructor(
    private readonly store: RegionStore,
    extensionUri: vscode.Uri,
  ) {
    this.type = vscode.window.createTextEditorDecorationType({
      isWholeLine: true,
      backgroundColor: new vscode.ThemeColor('rseqdbg.criticalSectionBackground'),
      overviewRulerColor: new vscode.ThemeColor('rseqdbg.criticalSectionBackground'),
      overviewRulerLane: vscode.OverviewRulerLane.Left,
      gutterIconPath: vscode.Uri.joinPath(extensionUri, 'media', 'region.svg'),
      gutterIconSize: '70%',
    });
    this.subs.push(store.onDidChange(() => this.update()));
    this.subs.push(vscode.window.onDidChangeVisibleTextEditors(() => this.update()));
    this.subs.push(vscode.debug.onDidChangeActiveDebugSession(() => this.update()));
    this.subs.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('rseqdbg.decorations')) {
          this.update();
        }
      }),
    );
  }

  update(): void {
    const enabled = vscode.workspace.getConfiguration('rseqdbg').get<boolean>('decorations', true);
    const regions = enabled ? this.store.regions(activeRseqSession()) : [];
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document.uri.scheme !== 'file') {
        continue;
      }
      const options: vscode.DecorationOptions[] = [];
      for (const [line, rs] of regionsByLine(regions, editor.document.uri.fsPath)) {
        if (line > editor.document.lineCount) {
          continue;
        }
        const hover = new vscode.MarkdownString(rs.map(regionHover).join('\n\n---\n\n'));
        options.push({ range: editor.document.lineAt(line - 1).range, hoverMessage: hover });
      }
      editor.setDecorations(this.type, options);
    }
  }

  dispose(): void {
    this.type.dispose();
    for (const s of this.subs) {
      s.dispose();
    }
  }
}
