package wire

import (
	"fmt"
	"strings"
)

// VContAction is one action of a vCont packet.
type VContAction struct {
	// Action is 'c' (continue), 'C' (continue with signal), 's' (step),
	// 'S' (step with signal), 't' (stop) or 'r' (range step).
	Action byte
	// Signal is the signal to deliver for 'C' and 'S'.
	Signal uint8
	// RangeStart and RangeEnd bound an 'r' action: step while
	// RangeStart <= pc < RangeEnd.
	RangeStart, RangeEnd uint64
	// Thread is the thread the action applies to; [ThreadAll] when the
	// packet names none.
	Thread ThreadID
}

// ParseVCont parses "vCont;action[:thread-id][;action[:thread-id]]...". The
// peer expects each thread to take the leftmost action that matches it, so
// the order of the result matters. "vCont?" is a query, not a request, and is
// rejected.
func ParseVCont(payload string) ([]VContAction, error) {
	rest, ok := strings.CutPrefix(payload, "vCont;")
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a vCont request", ErrSyntax, Clip(payload))
	}
	var acts []VContAction
	for {
		item, more, found := strings.Cut(rest, ";")
		a, err := parseVContAction(item)
		if err != nil {
			return nil, fmt.Errorf("vCont action %d: %w", len(acts)+1, err)
		}
		acts = append(acts, a)
		if !found {
			return acts, nil
		}
		rest = more
	}
}

func parseVContAction(s string) (VContAction, error) {
	if s == "" {
		return VContAction{}, fmt.Errorf("%w: empty action", ErrSyntax)
	}
	a := VContAction{Action: s[0], Thread: ThreadAll}
	body, tid, hasTid := strings.Cut(s[1:], ":")
	if hasTid {
		t, err := ParseThreadID(tid)
		if err != nil {
			return VContAction{}, err
		}
		a.Thread = t
	}
	switch a.Action {
	case 'c', 's', 't':
		if body != "" {
			return VContAction{}, fmt.Errorf("%w: action %q takes no argument", ErrSyntax, Clip(s))
		}
	case 'C', 'S':
		sig, err := ParseHexUint64(body)
		if err != nil || sig > 0xff {
			return VContAction{}, fmt.Errorf("%w: bad signal in action %q", ErrSyntax, Clip(s))
		}
		a.Signal = uint8(sig)
	case 'r':
		startStr, endStr, ok := strings.Cut(body, ",")
		if !ok {
			return VContAction{}, fmt.Errorf("%w: range action %q lacks start,end", ErrSyntax, Clip(s))
		}
		var err error
		if a.RangeStart, err = ParseHexUint64(startStr); err != nil {
			return VContAction{}, fmt.Errorf("range start: %w", err)
		}
		if a.RangeEnd, err = ParseHexUint64(endStr); err != nil {
			return VContAction{}, fmt.Errorf("range end: %w", err)
		}
	default:
		return VContAction{}, fmt.Errorf("%w: unknown action %q", ErrSyntax, Clip(s))
	}
	return a, nil
}

// AppendVCont appends a "vCont;..." request. The thread is omitted for
// actions on [ThreadAll], which is what gdb sends for a default action.
// Actions other than those [ParseVCont] accepts are written as given.
func AppendVCont(dst []byte, actions []VContAction, multiprocess bool) []byte {
	dst = append(dst, "vCont"...)
	for _, a := range actions {
		dst = append(dst, ';', a.Action)
		switch a.Action {
		case 'C', 'S':
			dst = append(dst, hexDigits[a.Signal>>4], hexDigits[a.Signal&0xf])
		case 'r':
			dst = AppendHexUint64(dst, a.RangeStart)
			dst = append(dst, ',')
			dst = AppendHexUint64(dst, a.RangeEnd)
		}
		if a.Thread != ThreadAll {
			dst = append(dst, ':')
			dst = a.Thread.AppendTo(dst, multiprocess)
		}
	}
	return dst
}
