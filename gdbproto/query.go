package gdbproto

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/cpu"
)

const triple = "x86_64-pc-linux-gnu"

// query answers q packets.
func (s *session) query(pkt string) [][]byte {
	switch {
	case strings.HasPrefix(pkt, "qSupported"):
		return s.supported(pkt)
	case pkt == "qC":
		pr := s.live()
		if pr == nil {
			return replyErr
		}
		return one("QC" + s.threadIDString(pr.p.Pid(), s.current()))
	case pkt == "qfThreadInfo":
		pr := s.live()
		if pr == nil {
			return one("l")
		}
		var ids []string
		for _, q := range s.srv.processes() {
			if q.exited || q.eng.Exited() {
				continue
			}
			for _, t := range q.p.Threads() {
				ids = append(ids, s.threadIDString(q.p.Pid(), t))
			}
		}
		return one("m" + strings.Join(ids, ","))
	case pkt == "qsThreadInfo":
		return one("l")
	case pkt == "qAttached" || strings.HasPrefix(pkt, "qAttached:"):
		if pr := s.srv.proc; pr != nil && !pr.launched {
			return one("1")
		}
		return one("0")
	case strings.HasPrefix(pkt, "qSymbol"):
		return replyOK
	case strings.HasPrefix(pkt, "qXfer:"):
		return s.xfer(pkt)
	case strings.HasPrefix(pkt, "qRcmd,"):
		return s.monitor(pkt[len("qRcmd,"):])
	case pkt == "qHostInfo":
		s.lldb = true
		host, _ := os.Hostname()
		return one(fmt.Sprintf("triple:%s;ptrsize:8;endian:little;ostype:linux;vendor:pc;"+
			"watchpoint_exceptions_received:after;hostname:%s;",
			wire.AppendHex(nil, []byte(triple)), wire.AppendHex(nil, []byte(host))))
	case pkt == "qProcessInfo":
		s.lldb = true
		pr := s.live()
		if pr == nil {
			return replyErr
		}
		return one(fmt.Sprintf("pid:%x;parent-pid:%x;real-uid:%x;real-gid:%x;effective-uid:%x;effective-gid:%x;"+
			"triple:%s;ostype:linux;endian:little;ptrsize:8;",
			pr.p.Pid(), os.Getpid(), os.Getuid(), os.Getgid(), os.Geteuid(), os.Getegid(),
			wire.AppendHex(nil, []byte(triple))))
	case strings.HasPrefix(pkt, "qRegisterInfo"):
		n, err := parseHexInt(pkt[len("qRegisterInfo"):], 1<<16)
		if err != nil {
			return replyErr
		}
		avx := cpu.X86.HasAVX
		if pr := s.live(); pr != nil {
			avx = pr.hasAVX()
		}
		return one(wire.RegisterInfoReply(n, avx))
	case strings.HasPrefix(pkt, "qMemoryRegionInfo"):
		return s.memoryRegionInfo(strings.TrimPrefix(pkt[len("qMemoryRegionInfo"):], ":"))
	case strings.HasPrefix(pkt, "qThreadStopInfo"):
		return s.threadStopInfo(pkt[len("qThreadStopInfo"):])
	case strings.HasPrefix(pkt, "qWatchpointSupportInfo"):
		return one("num:4;")
	}
	// qOffsets, qTStatus, qCRC, qGetTLSAddr, ...: unsupported. An empty
	// reply tells gdb to do without (PIE relocation comes from auxv).
	return replyEmpty
}

// supported answers qSupported, noting what the client can take.
func (s *session) supported(pkt string) [][]byte {
	_, feats, _ := strings.Cut(pkt, ":")
	for _, f := range strings.Split(feats, ";") {
		switch f {
		case "multiprocess+":
			s.multiprocess = true
		case "swbreak+":
			s.swbreak = true
		case "hwbreak+":
			s.hwbreak = true
		case "exec-events+":
			s.execEvents = true
		case "fork-events+":
			// Only where the target can keep fork children.
			s.forkEvents = s.canKeepForks()
		case "vfork-events+":
			s.vforkEvents = s.canKeepForks()
		}
		// lldb lists the architectures it can describe; gdb only i386.
		if strings.HasPrefix(f, "xmlRegisters=") && strings.Contains(f, "arm") {
			s.lldb = true
		}
	}
	// vfork children are followed along with fork children (gdb offers
	// both), never alone.
	s.vforkEvents = s.vforkEvents && s.forkEvents
	list := []string{
		fmt.Sprintf("PacketSize=%x", packetSize),
		"QStartNoAckMode+", "QPassSignals+", "QProgramSignals+", "QThreadEvents+",
		"QDisableRandomization+", "QStartupWithShell+", "QEnvironmentHexEncoded+",
		"QEnvironmentReset+", "QEnvironmentUnset+", "QSetWorkingDir+",
		"qXfer:features:read+", "qXfer:auxv:read+", "qXfer:libraries-svr4:read+",
		"qXfer:exec-file:read+", "qXfer:threads:read+", "vContSupported+",
		"ConditionalBreakpoints+", "QNonStop+",
	}
	if s.srv.withoutTargetXML {
		list = slices.DeleteFunc(list, func(f string) bool { return f == "qXfer:features:read+" })
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{s.multiprocess, "multiprocess+"}, {s.swbreak, "swbreak+"}, {s.hwbreak, "hwbreak+"}, {s.execEvents, "exec-events+"}, {s.forkEvents, "fork-events+"},
		{s.vforkEvents, "vfork-events+"}} {
		if f.on {
			list = append(list, f.name)
		}
	}
	if pr := s.srv.proc; pr != nil {
		s.followForks(pr)
	}
	return one(strings.Join(list, ";"))
}

// canKeepForks says whether the target can keep fork and vfork children
// (a stub behind the proxy cannot).
func (s *session) canKeepForks() bool {
	if pr := s.srv.proc; pr != nil {
		_, ok := pr.p.(target.ForkFollower)
		return ok
	}
	return s.srv.cfg.Proxy == nil
}

// followForks makes pr keep its fork children for a client that takes
// fork events, and its vfork children for one that takes vfork events
// (with the vforkdone it waits for): it decides itself to detach or keep
// each one. Runs on the tracer thread.
func (s *session) followForks(pr *process) {
	if !s.forkEvents {
		return
	}
	pr.rc.FollowVforks(s.vforkEvents, true)
	if err := pr.rc.FollowForks(true); err != nil {
		slog.Debug("following forks", "pid", pr.p.Pid(), "err", err)
	}
}

// set answers Q packets.
func (s *session) set(pkt string) [][]byte {
	name, arg, _ := strings.Cut(pkt, ":")
	switch name {
	case "QStartNoAckMode":
		s.noAckNext = true
		return replyOK
	case "QPassSignals":
		s.policy = s.passPolicy(arg)
		if pr := s.live(); pr != nil {
			pr.eng.SetSignalPolicy(s.policy)
		}
		return replyOK
	case "QThreadEvents":
		// Thread exits are reported in non-stop mode only (all-stop
		// runs them silently): every one with this, else those of the
		// threads the client waits for.
		s.threadEvents = arg == "1"
		return replyOK
	case "QProgramSignals", "QStartupWithShell", "QEnableErrorStrings":
		// Every signal may reach the program; programs are started
		// without a shell either way.
		return replyOK
	case "QThreadSuffixSupported":
		s.lldb = true
		return replyOK
	case "QListThreadsInStopReply":
		s.lldb, s.listThreads = true, true
		return replyOK
	case "QNonStop":
		return s.setNonStop(arg)
	case "QDisableRandomization", "QSetDisableASLR":
		s.keepASLR = arg == "0"
		return replyOK
	case "QEnvironmentHexEncoded":
		kv, err := wire.DecodeHex(arg)
		if err != nil {
			return replyErr
		}
		k, _, _ := strings.Cut(string(kv), "=")
		s.unsetEnv(k)
		s.env = append(s.env, string(kv))
		return replyOK
	case "QEnvironmentUnset":
		k, err := wire.DecodeHex(arg)
		if err != nil {
			return replyErr
		}
		s.unsetEnv(string(k))
		return replyOK
	case "QEnvironmentReset":
		s.env = nil
		return replyOK
	case "QSetWorkingDir":
		d, err := wire.DecodeHex(arg)
		if err != nil {
			return replyErr
		}
		s.cwd = string(d)
		return replyOK
	}
	return replyEmpty
}

func (s *session) unsetEnv(key string) {
	if s.env == nil {
		s.env = os.Environ()
	}
	kept := s.env[:0]
	for _, kv := range s.env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			kept = append(kept, kv)
		}
	}
	s.env = kept
}

// passPolicy turns QPassSignals into the engine's policy: listed signals
// are delivered without a stop; every other one stops and the client
// decides whether to pass it when it resumes.
func (s *session) passPolicy(list string) stepper.SignalPolicy {
	var p stepper.SignalPolicy
	for _, f := range strings.Split(list, ";") {
		if f == "" {
			continue
		}
		v, err := parseHexInt(f, 0xff)
		if err != nil {
			continue
		}
		if sig := s.hostSignal(v); sig > 0 && sig < len(p.NoStop) {
			p.NoStop[sig] = true
		}
	}
	return p
}

// vPacket answers v packets other than the process lifecycle ones.
func (s *session) vPacket(pkt string) [][]byte {
	switch {
	case pkt == "vCont?":
		return one(vContActions)
	case strings.HasPrefix(pkt, "vCont;"):
		return s.vCont(pkt)
	case pkt == "vStopped":
		return s.vStopped()
	case strings.HasPrefix(pkt, "vFile:"):
		return s.vFile(pkt[len("vFile:"):])
	}
	return replyEmpty
}

// memoryRegionInfo answers lldb's qMemoryRegionInfo from the memory map.
func (s *session) memoryRegionInfo(arg string) [][]byte {
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	addr, err := wire.ParseHexUint64(arg)
	if err != nil {
		return replyErr
	}
	maps, err := pr.p.Maps()
	if err != nil {
		return replyErr
	}
	next := ^uint64(0)
	for _, m := range maps {
		if addr >= m.Start && addr < m.End {
			perms := ""
			for i, c := range "rwx" {
				if len(m.Perms) > i && m.Perms[i] == byte(c) {
					perms += string(c)
				}
			}
			out := fmt.Sprintf("start:%x;size:%x;permissions:%s;", m.Start, m.End-m.Start, perms)
			if m.Path != "" {
				out += fmt.Sprintf("name:%s;", wire.AppendHex(nil, []byte(m.Path)))
			}
			return one(out)
		}
		if m.Start > addr && m.Start < next {
			next = m.Start
		}
	}
	return one(fmt.Sprintf("start:%x;size:%x;", addr, next-addr))
}
