package regions

import (
	"fmt"
	"sort"
)

// Index is an interval index over non-overlapping regions: a sorted slice
// and binary search. It is used from one goroutine.
type Index struct {
	byKey  map[string][]*Region
	sorted []*Region
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{byKey: map[string][]*Region{}} }

// SetObject replaces one object's regions. A region overlapping one already
// indexed is left out with a warning (the earlier one wins).
func (x *Index) SetObject(key string, regs []*Region) []string {
	x.RemoveObject(key)
	cand := append([]*Region(nil), regs...)
	sort.Slice(cand, func(i, j int) bool { return cand[i].Start < cand[j].Start })
	var warns []string
	kept := make([]*Region, 0, len(cand))
	for _, r := range cand {
		o := x.overlap(r)
		if o == nil && len(kept) > 0 && kept[len(kept)-1].End > r.Start {
			o = kept[len(kept)-1]
		}
		if o != nil {
			warns = append(warns, fmt.Sprintf("%s [%#x, %#x) overlaps %s [%#x, %#x): ignored", r.Name, r.Start, r.End, o.Name, o.Start, o.End))
			continue
		}
		kept = append(kept, r)
	}
	x.sorted = append(x.sorted, kept...)
	sort.Slice(x.sorted, func(i, j int) bool { return x.sorted[i].Start < x.sorted[j].Start })
	x.byKey[key] = kept
	return warns
}

// Add indexes one more region under key.
func (x *Index) Add(key string, r *Region) []string {
	if o := x.overlap(r); o != nil {
		return []string{fmt.Sprintf("%s [%#x, %#x) overlaps %s: ignored", r.Name, r.Start, r.End, o.Name)}
	}
	x.byKey[key] = append(x.byKey[key], r)
	x.insert(r)
	return nil
}

func (x *Index) insert(r *Region) {
	i := sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i].Start >= r.Start })
	x.sorted = append(x.sorted, nil)
	copy(x.sorted[i+1:], x.sorted[i:])
	x.sorted[i] = r
}

func (x *Index) overlap(r *Region) *Region {
	i := sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i].Start >= r.End })
	if i > 0 && x.sorted[i-1].End > r.Start {
		return x.sorted[i-1]
	}
	return nil
}

// RemoveObject drops one object's regions.
func (x *Index) RemoveObject(key string) {
	old := x.byKey[key]
	if len(old) == 0 {
		delete(x.byKey, key)
		return
	}
	gone := make(map[*Region]bool, len(old))
	for _, r := range old {
		gone[r] = true
	}
	kept := x.sorted[:0]
	for _, r := range x.sorted {
		if !gone[r] {
			kept = append(kept, r)
		}
	}
	x.sorted = kept
	delete(x.byKey, key)
}

// Lookup returns the region holding pc, or nil. O(log n).
func (x *Index) Lookup(pc uint64) *Region {
	i := sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i].Start > pc }) - 1
	if i >= 0 && pc < x.sorted[i].End {
		return x.sorted[i]
	}
	return nil
}

// Intersecting returns the regions meeting [lo, hi).
func (x *Index) Intersecting(lo, hi uint64) []*Region {
	var out []*Region
	i := sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i].End > lo })
	for ; i < len(x.sorted) && x.sorted[i].Start < hi; i++ {
		out = append(out, x.sorted[i])
	}
	return out
}

// All returns every region sorted by start.
func (x *Index) All() []*Region { return append([]*Region(nil), x.sorted...) }

// Len is the number of regions.
func (x *Index) Len() int { return len(x.sorted) }
