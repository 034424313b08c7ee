# Loaded by tests/inspect_test.go into gdb connected to rseqdbg, stopped at
# the entry of a function holding a critical section. It turns inspect mode
# on, steps to the section, then stepi by stepi to its commit, checking each
# stop; it prints @@FAIL lines for what is wrong and @@OK at the end.
import re
import gdb

def status_line(tid):
    out = gdb.execute("monitor rseq status", to_string=True)
    for l in out.splitlines():
        if l.startswith("thread %d:" % tid):
            return l
    return ""

def affinity(pid, tid):
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for l in f:
            if l.startswith("Cpus_allowed_list:"):
                return l.split()[1]

def pc():
    return int(gdb.parse_and_eval("$pc")) & (2**64 - 1)

def successors():
    # The instruction at pc and the next one: the fall-through, and a
    # branch or call target named in the operands.
    lines = gdb.execute("x/2i $pc", to_string=True).splitlines()
    nxt = set()
    if len(lines) >= 2:
        m = re.search(r"(0x[0-9a-f]+)", lines[1])
        nxt.add(int(m.group(1), 16))
    m = re.search(r"\s(?:j\w+|call)\s+(0x[0-9a-f]+)", lines[0])
    if m:
        nxt.add(int(m.group(1), 16))
    if re.search(r"\sret\w*\s*$", lines[0]):
        nxt = {int(gdb.parse_and_eval("*(unsigned long *)$sp")) & (2**64 - 1)}
    return lines[0].strip(), nxt

def fail(msg):
    print("@@FAIL " + msg)

def walk():
    th = gdb.selected_thread()
    pid, tid = th.ptid[0], th.ptid[1]
    before = affinity(pid, tid)
    print("@@thread %d affinity %s" % (tid, before))
    gdb.execute("monitor rseq inspect on")
    # Step from the function's entry to the section's first instruction.
    line = ""
    for _ in range(300):
        line = status_line(tid)
        if "inside critical section" in line:
            break
        gdb.execute("stepi", to_string=True)
    m = re.search(r"inside critical section (\S+) \[(0x[0-9a-f]+), (0x[0-9a-f]+)\)", line)
    if not m:
        fail("never entered a section: " + line)
        return
    name, start, end = m.group(1), int(m.group(2), 16), int(m.group(3), 16)
    if pc() != start:
        fail("entered %s at %#x, not at its start %#x" % (name, pc(), start))
    cs = re.search(r"rseq_cs (0x[0-9a-f]+)", line)
    desc = int(cs.group(1), 16) if cs else 0
    if desc == 0:
        fail("rseq_cs is 0 at the start of %s" % name)
        return
    start_ip = int.from_bytes(gdb.selected_inferior().read_memory(desc + 8, 8).tobytes(), "little")
    if start_ip != start:
        fail("rseq_cs %#x names start_ip %#x, not %#x" % (desc, start_ip, start))
    steps = 0
    while pc() != end and steps < 200:
        insn, nxt = successors()
        out = gdb.execute("stepi", to_string=True)
        steps += 1
        now = pc()
        if now not in nxt:
            fail("stepi %d from `%s` stopped at %#x, want one of %s" % (steps, insn, now, [hex(a) for a in nxt]))
            return
        if start <= now < end:
            # A stop at the start, entered from outside (a retry), is
            # before the inspection: the next resumption pins the thread.
            pinned = affinity(pid, tid)
            if now != start and ("-" in pinned or "," in pinned):
                fail("stop %d at %#x: thread not pinned to one CPU: %s" % (steps, now, pinned))
            line = status_line(tid)
            if "inspected" not in line:
                fail("stop %d at %#x not inspected: %s" % (steps, now, line))
            cs = re.search(r"rseq_cs (0x[0-9a-f]+)", line)
            if not cs or int(cs.group(1), 16) != desc:
                fail("stop %d at %#x: rseq_cs reads %s, want %#x" % (steps, now, cs and cs.group(1), desc))
            if "inspecting critical section %s at +%d of %d" % (name, now - start, end - start) not in out:
                fail("stop %d at %#x: no inspecting line in %r" % (steps, now, out))
    if pc() != end:
        fail("did not reach the commit %#x in %d steps (pc %#x)" % (end, steps, pc()))
        return
    after = affinity(pid, tid)
    if after != before:
        fail("affinity after the section %s, before %s" % (after, before))
    print("@@OK %s steps %d affinity %s" % (name, steps, after))

walk()
