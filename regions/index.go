package regions

import (
	"fmt"
	"sort"
)

// Index is an interval index over non-overlapping regions: starts sorted in
// one slice for binary search. It is not safe for concurrent use; the
// stepper uses it from one goroutine.
type Index struct {
	starts []uint64 // starts[i] == regs[i].Start, sorted
	regs   []*Region
	keys   []string // keys[i] is the object regs[i] belongs to
	count  map[string]int
	// sections counts the critical sections among regs.
	sections int
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{count: map[string]int{}} }

// Len is the number of indexed regions.
func (x *Index) Len() int { return len(x.regs) }

// Sections is the number of indexed critical sections: with none, no
// thread can be inside one, which spares looking at every thread.
func (x *Index) Sections() int { return x.sections }

// All returns every indexed region sorted by Start.
func (x *Index) All() []*Region { return append([]*Region(nil), x.regs...) }

// Lookup returns the region holding pc, or nil. O(log n).
func (x *Index) Lookup(pc uint64) *Region {
	// Regions do not overlap, so only the last one starting at or before pc
	// can hold it.
	lo, hi := 0, len(x.starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.starts[m] > pc {
			hi = m
		} else {
			lo = m + 1
		}
	}
	i := lo - 1
	if i >= 0 && pc < x.regs[i].End {
		return x.regs[i]
	}
	return nil
}

// Intersecting returns the regions meeting [lo, hi), sorted by Start.
func (x *Index) Intersecting(lo, hi uint64) []*Region {
	if hi <= lo {
		return nil
	}
	// Non-overlapping and sorted by start means sorted by end too.
	i := sort.Search(len(x.regs), func(i int) bool { return x.regs[i].End > lo })
	var out []*Region
	for ; i < len(x.regs) && x.regs[i].Start < hi; i++ {
		out = append(out, x.regs[i])
	}
	return out
}

// RemoveObject drops every region indexed under key.
func (x *Index) RemoveObject(key string) {
	if x.count[key] == 0 {
		delete(x.count, key)
		return
	}
	j := 0
	for i := range x.regs {
		if x.keys[i] == key {
			if x.regs[i].Kind == KindCriticalSection {
				x.sections--
			}
			continue
		}
		x.starts[j], x.regs[j], x.keys[j] = x.starts[i], x.regs[i], x.keys[i]
		j++
	}
	clear(x.regs[j:])
	x.starts, x.regs, x.keys = x.starts[:j], x.regs[:j], x.keys[:j]
	delete(x.count, key)
}

// SetObject replaces key's regions with regs. A region overlapping one
// already indexed (or an earlier one of regs, by start) is left out, and
// empty ranges are never indexed; each refusal is a returned warning.
func (x *Index) SetObject(key string, regs []*Region) []string {
	x.RemoveObject(key)
	cand := make([]*Region, 0, len(regs))
	for _, r := range regs {
		if r != nil {
			cand = append(cand, r)
		}
	}
	less := func(i, j int) bool { return cand[i].Start < cand[j].Start }
	if !sort.SliceIsSorted(cand, less) {
		sort.SliceStable(cand, less)
	}
	var warns []string
	kept := cand[:0]
	for _, r := range cand {
		if w := x.refuse(r); w != "" {
			warns = append(warns, w)
			continue
		}
		if n := len(kept); n > 0 && kept[n-1].End > r.Start {
			warns = append(warns, overlapWarning(r, kept[n-1]))
			continue
		}
		kept = append(kept, r)
	}
	if len(kept) == 0 {
		return warns
	}
	x.merge(key, kept)
	return warns
}

// Add indexes one more region under key.
func (x *Index) Add(key string, r *Region) []string {
	if r == nil {
		return nil
	}
	if w := x.refuse(r); w != "" {
		return []string{w}
	}
	i := sort.Search(len(x.starts), func(i int) bool { return x.starts[i] > r.Start })
	x.starts = append(x.starts, 0)
	x.regs = append(x.regs, nil)
	x.keys = append(x.keys, "")
	copy(x.starts[i+1:], x.starts[i:])
	copy(x.regs[i+1:], x.regs[i:])
	copy(x.keys[i+1:], x.keys[i:])
	x.starts[i], x.regs[i], x.keys[i] = r.Start, r, key
	x.count[key]++
	if r.Kind == KindCriticalSection {
		x.sections++
	}
	return nil
}

// refuse says why r cannot be indexed next to the current regions.
func (x *Index) refuse(r *Region) string {
	if r.End <= r.Start {
		return fmt.Sprintf("%s is empty: not indexed", r)
	}
	if o := x.overlapping(r); o != nil {
		return overlapWarning(r, o)
	}
	return ""
}

func overlapWarning(r, o *Region) string {
	return fmt.Sprintf("%s overlaps %s: ignored (the earlier one is kept)", r, o)
}

// overlapping returns an indexed region meeting r, or nil.
func (x *Index) overlapping(r *Region) *Region {
	i := sort.Search(len(x.regs), func(i int) bool { return x.regs[i].End > r.Start })
	if i < len(x.regs) && x.regs[i].Start < r.End {
		return x.regs[i]
	}
	return nil
}

// merge inserts sorted, mutually disjoint regions that overlap nothing
// indexed.
func (x *Index) merge(key string, add []*Region) {
	n := len(x.regs) + len(add)
	starts := make([]uint64, 0, n)
	regs := make([]*Region, 0, n)
	keys := make([]string, 0, n)
	i, j := 0, 0
	for i < len(x.regs) || j < len(add) {
		if j >= len(add) || (i < len(x.regs) && x.starts[i] <= add[j].Start) {
			starts, regs, keys = append(starts, x.starts[i]), append(regs, x.regs[i]), append(keys, x.keys[i])
			i++
			continue
		}
		starts, regs, keys = append(starts, add[j].Start), append(regs, add[j]), append(keys, key)
		if add[j].Kind == KindCriticalSection {
			x.sections++
		}
		j++
	}
	x.starts, x.regs, x.keys = starts, regs, keys
	x.count[key] += len(add)
}
