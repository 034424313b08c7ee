// Unit tests of the pure helpers: region formatting, source matching,
// binary resolution. They need no VS Code and no debug adapter.
import * as assert from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveBinary } from '../adapter';
import { hexAddr, normalizeRegions, objectsOf, Region, regionDescription, regionHover, regionLabel, regionsByLine, regionSize } from '../model';
import { listProcesses } from '../processes';

const r1: Region = {
  kind: 'rseq',
  name: 'worker+58',
  object: '/x/full_tables',
  start: '0x55555555529a',
  commit: 0x5555555552b7,
  abort: '0x5555555552e0',
  source: { path: '/x/full_tables.c', line: 41 },
};

describe('model', () => {
  it('formats addresses given as numbers, hex or decimal strings', () => {
    assert.strictEqual(hexAddr(255), '0xff');
    assert.strictEqual(hexAddr('0xFF'), '0xff');
    assert.strictEqual(hexAddr('4096'), '0x1000');
    assert.strictEqual(hexAddr(undefined), '?');
  });

  it('describes a region', () => {
    assert.strictEqual(regionLabel(r1), 'worker+58');
    assert.strictEqual(regionLabel({ ...r1, name: '' }), 'rseq 0x55555555529a');
    assert.strictEqual(regionSize(r1), 0x1d);
    assert.strictEqual(regionDescription(r1), 'rseq [0x55555555529a, 0x5555555552b7) abort 0x5555555552e0');
    assert.match(regionHover(r1), /rseq critical section/);
    assert.match(regionHover(r1), /full_tables\.c:41/);
  });

  it('maps regions to the lines of one file', () => {
    const other: Region = { ...r1, source: { path: '/x/other.c', line: 3 } };
    const nosrc: Region = { ...r1, source: undefined };
    const m = regionsByLine([r1, other, nosrc, { ...r1, name: 'b' }], '/x/./full_tables.c');
    assert.deepStrictEqual([...m.keys()], [41]);
    assert.strictEqual(m.get(41)?.length, 2);
  });

  it('accepts source as "path:line" or {path, line}, end for commit', () => {
    const rs = normalizeRegions({
      regions: [
        { kind: 'rseq', name: 'a', object: '/o', start: '0x10', end: '0x20', commit: '0x20', abort: '0x30', source: '/x/a.c:12' },
        { kind: 'vdso', name: '__vdso_clock_gettime', object: '[vdso]', start: '0x40', end: '0x80' },
        { kind: 'rseq', name: 'b', object: '/o', start: 16, commit: 32, abort: 48, source: { path: '/x/b.c', line: 3 } },
        null,
      ],
    });
    assert.strictEqual(rs.length, 3);
    assert.deepStrictEqual(rs[0].source, { path: '/x/a.c', line: 12 });
    assert.strictEqual(rs[1].commit, '0x80');
    assert.strictEqual(rs[1].source, undefined);
    assert.strictEqual(regionDescription(rs[1]), 'vdso [0x40, 0x80)');
    assert.deepStrictEqual(rs[2].source, { path: '/x/b.c', line: 3 });
    assert.deepStrictEqual(normalizeRegions(undefined), []);
  });

  it('lists objects in first-seen order', () => {
    assert.deepStrictEqual(objectsOf([r1, { ...r1, object: '/lib.so' }, r1]), ['/x/full_tables', '/lib.so']);
  });
});

describe('adapter binary', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rseqdbg-ext-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('prefers the rseqdbg.path setting, then the bundled bin/rseqdbg', () => {
    fs.mkdirSync(path.join(dir, 'bin'));
    const bundled = path.join(dir, 'bin', 'rseqdbg');
    fs.writeFileSync(bundled, '#!/bin/sh\n', { mode: 0o755 });
    assert.deepStrictEqual(resolveBinary(dir, ''), { path: bundled, from: 'bundled' });
    const own = path.join(dir, 'own');
    fs.writeFileSync(own, '#!/bin/sh\n', { mode: 0o755 });
    assert.deepStrictEqual(resolveBinary('/nonexistent', '${workspaceFolder}/own', dir), { path: own, from: 'setting' });
    assert.deepStrictEqual(resolveBinary('/nonexistent', 'own', dir), { path: own, from: 'setting' });
  });

  it('says what to do when there is none', () => {
    assert.throws(() => resolveBinary('/nonexistent', ''), /rseqdbg\.path/);
    fs.writeFileSync(path.join(dir, 'noexec'), 'x', { mode: 0o644 });
    assert.throws(() => resolveBinary(dir, path.join(dir, 'noexec')), /not an executable/);
  });
});

describe('pickProcess listing', () => {
  it('lists processes with their command lines', () => {
    const ps = listProcesses();
    assert.ok(ps.length > 0);
    assert.ok(ps.every((p) => p.pid > 0 && p.cmdline.length > 0));
  });
});
