// `rseqdbg abort-test --json` results and pure helpers over them (no vscode
// import, so the mocha tests can load this file too): what the Restartable
// Regions view, the source decorations and the disassembly show.
import { addrValue, hexAddr, Region } from './model';

/** One critical section of an abort-test run. */
export interface AbortSection {
  name: string;
  start: string;
  end: string;
  file?: string;
  line?: number;
  entries: number;
  /** Positions k (instructions into the section) on the paths seen, covered by an injected abort. */
  total: number;
  covered: number;
  injected: number;
  /** Positions k whose injected abort broke the program. */
  failing: number[];
  /** Where each position k was: the PC the abort was injected at. */
  pcs: Map<number, string>;
}

export interface AbortFailure {
  section: string;
  start: string;
  k: number;
  run: number;
  seed: number;
  ending: string;
}

export interface AbortTestResult {
  ok: boolean;
  seed?: number;
  runs?: number;
  sections: AbortSection[];
  failure?: AbortFailure;
  /** Set when the output had no summary: what went wrong instead. */
  error?: string;
}

/** The arguments of `rseqdbg abort-test --json` for a launch configuration. */
export function abortTestArgs(config: { program?: unknown; args?: unknown }): string[] {
  if (typeof config.program !== 'string' || config.program === '') {
    throw new Error('the launch configuration has no "program"');
  }
  const args = Array.isArray(config.args) ? config.args.map(String) : [];
  return ['abort-test', '--json', '--', config.program, ...args];
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

function endingText(v: unknown): string {
  if (!v || typeof v !== 'object') {
    return '';
  }
  const o = v as { code?: unknown; signal?: unknown };
  if (typeof o.signal === 'string' || typeof o.signal === 'number') {
    return `killed by signal ${String(o.signal)}`;
  }
  return `exit code ${num(o.code)}`;
}

/** Parses abort-test's JSON lines (injections, then one summary). */
export function parseAbortTest(text: string): AbortTestResult {
  const pcs = new Map<string, Map<number, string>>();
  let summary: Record<string, unknown> | undefined;
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l.startsWith('{')) {
      continue;
    }
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(l) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (o.event === 'injection') {
      const key = hexAddr(o.start as number);
      const m = pcs.get(key) ?? new Map<number, string>();
      m.set(num(o.k), hexAddr(o.pc as number));
      pcs.set(key, m);
    } else if (o.event === 'summary') {
      summary = o;
    }
  }
  if (!summary) {
    return { ok: false, sections: [], error: 'abort-test printed no summary' };
  }
  const sections: AbortSection[] = [];
  for (const s of Array.isArray(summary.sections) ? summary.sections : []) {
    const o = s as Record<string, unknown>;
    const start = hexAddr(o.start as number);
    sections.push({
      name: typeof o.name === 'string' ? o.name : start,
      start,
      end: hexAddr(o.end as number),
      file: typeof o.file === 'string' && o.file !== '' ? o.file : undefined,
      line: typeof o.line === 'number' && o.line > 0 ? o.line : undefined,
      entries: num(o.entries),
      total: num(o.total),
      covered: num(o.covered),
      injected: num(o.injected),
      failing: Array.isArray(o.failing) ? o.failing.map(Number) : [],
      pcs: pcs.get(start) ?? new Map<number, string>(),
    });
  }
  let failure: AbortFailure | undefined;
  if (summary.failure && typeof summary.failure === 'object') {
    const f = summary.failure as Record<string, unknown>;
    failure = {
      section: typeof f.section === 'string' ? f.section : '',
      start: hexAddr(f.start as number),
      k: num(f.k),
      run: num(f.run),
      seed: num(f.seed),
      ending: endingText(f.ending),
    };
  }
  return { ok: summary.ok === true, seed: num(summary.seed), runs: num(summary.runs), sections, failure };
}

/** "7/7 positions covered", or with the failing positions. */
export function coverageLabel(s: AbortSection): string {
  const base = `abort-test: ${s.covered}/${s.total} positions covered`;
  if (s.failing.length === 0) {
    return base;
  }
  return `${base}, fails at k=${s.failing.join(',')}`;
}

/** Markdown hover for a section's coverage. */
export function coverageHover(s: AbortSection, failure?: AbortFailure): string {
  const lines = [`**abort-test** \`${s.name}\`: ${s.covered}/${s.total} positions covered, ${s.injected} aborts injected over ${s.entries} entries`];
  for (const k of s.failing) {
    lines.push(`- **fails** when aborted after ${k} instruction${k === 1 ? '' : 's'} (at \`${s.pcs.get(k) ?? '?'}\`)`);
  }
  if (failure && failure.start === s.start) {
    lines.push(`- first failure: run ${failure.run}, ${failure.ending}; replay with \`--seed ${failure.seed}\``);
  }
  return lines.join('\n');
}

/** The section of the result that is this region (same start, else same name). */
export function sectionOfRegion(result: AbortTestResult | undefined, r: Region): AbortSection | undefined {
  if (!result) {
    return undefined;
  }
  const start = addrValue(r.start);
  return result.sections.find((s) => start !== undefined && addrValue(s.start) === start) ?? result.sections.find((s) => s.name === r.name);
}

/** Sections whose source is at fsPath, by 1-based line. */
export function sectionsByLine(result: AbortTestResult | undefined, fsPath: string, resolve: (p: string) => string = (p) => p): Map<number, AbortSection[]> {
  const out = new Map<number, AbortSection[]>();
  for (const s of result?.sections ?? []) {
    if (!s.file || !s.line || resolve(s.file) !== resolve(fsPath)) {
      continue;
    }
    const list = out.get(s.line) ?? [];
    list.push(s);
    out.set(s.line, list);
  }
  return out;
}

/** What abort-test says of the instruction at addr: covered, failing, or nothing. */
export function positionMark(result: AbortTestResult | undefined, addr: string): { k: number; failing: boolean } | undefined {
  const a = addrValue(addr);
  if (a === undefined) {
    return undefined;
  }
  for (const s of result?.sections ?? []) {
    for (const [k, pc] of s.pcs) {
      if (addrValue(pc) === a) {
        return { k, failing: s.failing.includes(k) };
      }
    }
  }
  return undefined;
}
