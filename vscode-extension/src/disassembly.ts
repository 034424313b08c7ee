// A read-only document with the disassembly of one region, from the
// adapter's `disassemble` request, its start, commit and abort marked. VS
// Code's own disassembly view can only be opened at the current frame's
// instruction, not at an arbitrary address, so regions without source open
// here.
import * as vscode from 'vscode';
import { AbortTestResult, positionMark } from './abortTest';
import { addrValue, hexAddr, Region, regionLabel } from './model';

export const DISASM_SCHEME = 'rseqdbg-disasm';

interface Instruction {
  address: string;
  instructionBytes?: string;
  instruction: string;
  symbol?: string;
  line?: number;
}

export class DisassemblyProvider implements vscode.TextDocumentContentProvider {
  private readonly sessions = new Map<string, vscode.DebugSession>();

  /** abort-test's latest result marks each position it aborted at. */
  constructor(private readonly abortTests?: { readonly result: AbortTestResult | undefined }) {}

  track(session: vscode.DebugSession): void {
    this.sessions.set(session.id, session);
  }

  untrack(session: vscode.DebugSession): void {
    this.sessions.delete(session.id);
  }

  static uriFor(region: Region, sessionId: string): vscode.Uri {
    const q = new URLSearchParams({
      session: sessionId,
      kind: region.kind ?? '',
      name: regionLabel(region),
      object: region.object ?? '',
      start: hexAddr(region.start),
      commit: hexAddr(region.commit),
      abort: hexAddr(region.abort),
    });
    const file = regionLabel(region).replace(/[^A-Za-z0-9_.+-]/g, '_') + '.s';
    return vscode.Uri.from({ scheme: DISASM_SCHEME, path: '/' + file, query: q.toString() });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const q = new URLSearchParams(uri.query);
    const session = this.sessions.get(q.get('session') ?? '');
    const start = q.get('start') ?? '?';
    const commit = q.get('commit') ?? '?';
    const abort = q.get('abort') ?? '?';
    const rseq = q.get('kind') === 'rseq';
    const head = [
      `; ${rseq ? 'rseq critical section' : q.get('kind') === 'vdso' ? 'vDSO function' : q.get('kind') || 'region'} ${q.get('name')}`,
      `; object ${q.get('object') || '?'}`,
      rseq ? `; [start ${start}, commit ${commit}), abort handler ${abort}` : `; [start ${start}, end ${commit})`,
      '; rseqdbg runs it atomically: a step that enters it stops where it leaves (commit, abort or an exit); in inspect mode it steps inside.',
      ';',
    ];
    if (!session) {
      return head.concat('; the debug session has ended: no disassembly.').join('\n') + '\n';
    }
    const s = addrValue(start);
    const c = addrValue(commit);
    const size = s !== undefined && c !== undefined && c > s ? Number(c - s) : 32;
    const body: string[] = [];
    try {
      body.push(...(await this.listing(session, start, -4, Math.min(size, 512) + 8, start, commit, abort)));
      if (rseq && abort !== '?' && abort !== '0x0') {
        body.push('', '; abort handler');
        body.push(...(await this.listing(session, abort, 0, 8, start, commit, abort)));
      }
    } catch (e) {
      body.push(`; disassemble failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    return head.concat(body).join('\n') + '\n';
  }

  private async listing(session: vscode.DebugSession, ref: string, offset: number, count: number, start: string, commit: string, abort: string): Promise<string[]> {
    const resp = (await session.customRequest('disassemble', {
      memoryReference: ref,
      instructionOffset: offset,
      instructionCount: count,
      resolveSymbols: true,
    })) as { instructions?: Instruction[] } | undefined;
    const s = addrValue(start);
    const c = addrValue(commit);
    const out: string[] = [];
    let lastSymbol: string | undefined;
    for (const ins of resp?.instructions ?? []) {
      const a = addrValue(ins.address);
      const inside = a !== undefined && s !== undefined && c !== undefined && a >= s && a < c;
      let mark = inside ? '|' : ' ';
      let note = '';
      if (a !== undefined && a === s) {
        mark = '>';
        note = '  ; <- start';
      } else if (a !== undefined && a === c) {
        mark = '#';
        note = '  ; <- commit (post-commit ip)';
      } else if (a !== undefined && a === addrValue(abort)) {
        mark = '!';
        note = '  ; <- abort handler';
      }
      const pos = positionMark(this.abortTests?.result, ins.address);
      if (pos) {
        note += pos.failing ? `  ; abort-test: FAILS when aborted here (k=${pos.k})` : `  ; abort-test: abort here covered (k=${pos.k})`;
        if (pos.failing) {
          mark = 'X';
        }
      }
      if (ins.symbol && ins.symbol !== lastSymbol) {
        out.push(`<${ins.symbol}>:`);
      }
      lastSymbol = ins.symbol;
      const bytes = (ins.instructionBytes ?? '').padEnd(24);
      out.push(`${mark} ${hexAddr(ins.address)}  ${bytes} ${ins.instruction}${note}`);
    }
    return out;
  }
}

/** Opens the region's disassembly; falls back to VS Code's disassembly view. */
export async function showRegionDisassembly(region: Region, sessionId: string): Promise<void> {
  try {
    const doc = await vscode.workspace.openTextDocument(DisassemblyProvider.uriFor(region, sessionId));
    await vscode.window.showTextDocument(doc, { preview: true });
  } catch {
    await vscode.commands.executeCommand('debug.action.openDisassemblyView');
  }
}
