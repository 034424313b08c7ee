// Types of the rseqdbg DAP custom requests and pure helpers over them (no
// vscode import, so the mocha tests can load this file too).
import * as path from 'path';

export interface RegionSource {
  path: string;
  line: number;
}

/** One restartable region as the `rseqRegions` custom request reports it. */
export interface Region {
  kind: string;
  name: string;
  object: string;
  start: number | string;
  /** Post-commit address of a critical section (its end). */
  commit: number | string;
  /** End of any region (vDSO functions have no commit). */
  end?: number | string;
  abort?: number | string;
  exits?: string[];
  warnings?: string[];
  source?: RegionSource;
}

export interface RegionsBody {
  regions: Region[];
  warnings?: string[];
}

/** A source given as "path:line" or as {path, line}. */
function parseSource(v: unknown): RegionSource | undefined {
  if (typeof v === 'string') {
    const m = /^(.*):(\d+)$/.exec(v);
    return m ? { path: m[1], line: Number(m[2]) } : undefined;
  }
  if (v && typeof v === 'object') {
    const o = v as { path?: unknown; line?: unknown };
    if (typeof o.path === 'string' && typeof o.line === 'number') {
      return { path: o.path, line: o.line };
    }
  }
  return undefined;
}

/** The regions of an rseqRegions response body, in one shape whatever the adapter's version sent. */
export function normalizeRegions(body: unknown): Region[] {
  const list = (body as { regions?: unknown } | undefined)?.regions;
  if (!Array.isArray(list)) {
    return [];
  }
  return list
    .filter((r): r is Record<string, unknown> => !!r && typeof r === 'object')
    .map((r) => {
      const addr = (v: unknown): number | string | undefined => (typeof v === 'number' || typeof v === 'string' ? v : undefined);
      const end = addr(r.end);
      return {
        kind: typeof r.kind === 'string' ? r.kind : '',
        name: typeof r.name === 'string' ? r.name : '',
        object: typeof r.object === 'string' ? r.object : '',
        start: addr(r.start) ?? '',
        commit: addr(r.commit) ?? end ?? '',
        end,
        abort: addr(r.abort),
        exits: Array.isArray(r.exits) ? r.exits.map(String) : undefined,
        warnings: Array.isArray(r.warnings) ? r.warnings.map(String) : undefined,
        source: parseSource(r.source),
      };
    });
}

/** An address as 0x-prefixed hex, whether the adapter sent a number or a string. */
export function hexAddr(v: number | string | undefined): string {
  if (v === undefined || v === null || v === '') {
    return '?';
  }
  if (typeof v === 'number') {
    return '0x' + v.toString(16);
  }
  const s = String(v).trim();
  if (/^0x[0-9a-f]+$/i.test(s)) {
    return '0x' + s.slice(2).toLowerCase();
  }
  if (/^[0-9]+$/.test(s)) {
    return '0x' + BigInt(s).toString(16);
  }
  return s;
}

/** An address as a bigint, or undefined when it is not one. */
export function addrValue(v: number | string | undefined): bigint | undefined {
  const h = hexAddr(v);
  return /^0x[0-9a-f]+$/.test(h) ? BigInt(h) : undefined;
}

/** Size in bytes of [start, commit), or undefined. */
export function regionSize(r: Region): number | undefined {
  const s = addrValue(r.start);
  const c = addrValue(r.commit);
  return s !== undefined && c !== undefined && c >= s ? Number(c - s) : undefined;
}

/** The label a person reads in the tree: the region's name, or its kind and start. */
export function regionLabel(r: Region): string {
  return r.name && r.name.length > 0 ? r.name : `${r.kind || 'region'} ${hexAddr(r.start)}`;
}

function hasAbort(r: Region): boolean {
  return r.abort !== undefined && r.abort !== '' && r.abort !== 0;
}

/** One-line summary: kind, [start, commit), abort. */
export function regionDescription(r: Region): string {
  const parts = [r.kind || 'region', `[${hexAddr(r.start)}, ${hexAddr(r.commit)})`];
  if (hasAbort(r)) {
    parts.push(`abort ${hexAddr(r.abort)}`);
  }
  return parts.join(' ');
}

/** Hover text for a region, markdown. */
export function regionHover(r: Region): string {
  const lines = [
    `**${r.kind === 'rseq' ? 'rseq critical section' : (r.kind || 'restartable region')}** \`${regionLabel(r)}\``,
    '',
    `- start \`${hexAddr(r.start)}\`, ${r.kind === 'rseq' ? 'commit' : 'end'} \`${hexAddr(r.commit)}\`` +
      (regionSize(r) !== undefined ? ` (${regionSize(r)} bytes)` : ''),
  ];
  if (hasAbort(r)) {
    lines.push(`- abort handler \`${hexAddr(r.abort)}\``);
  }
  for (const x of r.exits ?? []) {
    if (!/:(commit|abort)$/.test(x)) {
      lines.push(`- exit \`${x}\``);
    }
  }
  for (const w of r.warnings ?? []) {
    lines.push(`- warning: ${w}`);
  }
  if (r.object) {
    lines.push(`- in \`${r.object}\``);
  }
  if (r.source) {
    lines.push(`- ${path.basename(r.source.path)}:${r.source.line}`);
  }
  lines.push('', 'rseqdbg runs this section atomically: stepping into it stops at its commit or abort, never inside it, unless inspect mode is on (rseqdbg: Toggle Inspect Mode).');
  return lines.join('\n');
}

/** Regions whose source is the file at fsPath, by 1-based line. */
export function regionsByLine(regions: Region[], fsPath: string): Map<number, Region[]> {
  const want = path.resolve(fsPath);
  const out = new Map<number, Region[]>();
  for (const r of regions) {
    if (!r.source || !r.source.path || !(r.source.line > 0)) {
      continue;
    }
    if (path.resolve(r.source.path) !== want) {
      continue;
    }
    const list = out.get(r.source.line) ?? [];
    list.push(r);
    out.set(r.source.line, list);
  }
  return out;
}

/** The objects (executable, libraries) the regions belong to, in first-seen order. */
export function objectsOf(regions: Region[]): string[] {
  const seen: string[] = [];
  for (const r of regions) {
    const o = r.object || '';
    if (!seen.includes(o)) {
      seen.push(o);
    }
  }
  return seen;
}
