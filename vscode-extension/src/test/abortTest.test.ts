// Unit tests of the abort-test helpers over output `rseqdbg abort-test
// --json` printed for full_tables (all covered) and abort_bug (a failure).
import * as assert from 'assert';
import { abortTestArgs, coverageHover, coverageLabel, parseAbortTest, positionMark, sectionOfRegion, sectionsByLine } from '../abortTest';
import { Region } from '../model';

const failing = [
  '{"event":"injection","run":1,"section":"inc_shadow+47","start":93824992236248,"k":4,"thread":7,"pc":93824992236262}',
  '{"event":"injection","run":1,"section":"inc_shadow+47","start":93824992236248,"k":5,"thread":7,"pc":93824992236265}',
  'some program output',
  '{"event":"summary","seed":190918,"plain":{"code":0},"runs":5,"sections":[{"name":"inc_shadow+47","start":93824992236248,"end":93824992236273,' +
    '"file":"/x/abort_bug.c","line":27,"entries":15,"total":6,"covered":6,"injected":12,"failing":[5]}],' +
    '"failure":{"section":"inc_shadow+47","start":93824992236248,"k":5,"run":1,"seed":190918,"ending":{"code":3},"alone":true},"ok":false}',
].join('\n');

const passing =
  '{"event":"summary","seed":1,"plain":{"code":0},"runs":1,"sections":[{"name":"inc_full+34","start":93824992236235,"end":93824992236261,' +
  '"file":"/x/full_tables.c","line":24,"entries":10,"total":7,"covered":7,"injected":7}],"ok":true}\n';

describe('abort-test results', () => {
  it('builds the command line from a launch configuration', () => {
    assert.deepStrictEqual(abortTestArgs({ program: '/x/prog', args: ['1', 2] }), ['abort-test', '--json', '--', '/x/prog', '1', '2']);
    assert.throws(() => abortTestArgs({}), /no "program"/);
  });

  it('parses a failing run: the section, its failing position and where it is', () => {
    const r = parseAbortTest(failing);
    assert.strictEqual(r.ok, false);
    assert.strictEqual(r.sections.length, 1);
    const s = r.sections[0];
    assert.strictEqual(s.start, '0x5555555552d8');
    assert.deepStrictEqual(s.failing, [5]);
    assert.strictEqual(s.pcs.get(5), '0x5555555552e9');
    assert.strictEqual(coverageLabel(s), 'abort-test: 6/6 positions covered, fails at k=5');
    assert.match(coverageHover(s, r.failure), /fails\*\* when aborted after 5 instructions \(at `0x5555555552e9`\)/);
    assert.match(coverageHover(s, r.failure), /exit code 3; replay with `--seed 190918`/);
    assert.deepStrictEqual(positionMark(r, '0x5555555552e9'), { k: 5, failing: true });
    assert.deepStrictEqual(positionMark(r, '0x5555555552e6'), { k: 4, failing: false });
    assert.strictEqual(positionMark(r, '0x1'), undefined);
  });

  it('parses a passing run and matches it to the regions and source lines', () => {
    const r = parseAbortTest(passing);
    assert.strictEqual(r.ok, true);
    assert.strictEqual(coverageLabel(r.sections[0]), 'abort-test: 7/7 positions covered');
    const region: Region = { kind: 'rseq', name: 'other', object: '', start: '0x5555555552cb', commit: '0x5555555552e5' };
    assert.strictEqual(sectionOfRegion(r, region)?.name, 'inc_full+34');
    assert.strictEqual(sectionOfRegion(r, { ...region, start: '0x1', name: 'inc_full+34' })?.name, 'inc_full+34');
    assert.strictEqual(sectionOfRegion(r, { ...region, start: '0x1' }), undefined);
    assert.deepStrictEqual([...sectionsByLine(r, '/x/full_tables.c').keys()], [24]);
    assert.strictEqual(sectionsByLine(r, '/x/other.c').size, 0);
  });

  it('says when there is no summary', () => {
    assert.match(parseAbortTest('garbage\n').error ?? '', /no summary/);
  });
});
