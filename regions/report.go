package regions

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText prints, per object, its path, a table of its regions (kind,
// name, start, commit/end, abort, exits as addr:kind, source), the regions'
// warnings and the object's warnings.
func WriteText(w io.Writer, objs []*Object) error {
	bw := bufio.NewWriter(w)
	for i, o := range objs {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		fmt.Fprintf(bw, "%s (bias %#x): %d region(s)\n", o.Path, o.Bias, len(o.Regions))
		if len(o.Regions) > 0 {
			tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  KIND\tNAME\tSTART\tCOMMIT/END\tABORT\tEXITS\tSOURCE")
			for _, r := range o.Regions {
				name := r.Name
				if name == "" {
					name = hex(r.Start)
				}
				abort := "-"
				if r.Kind == KindCriticalSection {
					abort = hex(r.Abort)
				}
				fmt.Fprintf(tw, "  %s\t%s\t%#x\t%#x\t%s\t%s\t%s\n", r.Kind, name, r.Start, r.End, abort, exitList(r.Exits), r.Source)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		for _, r := range o.Regions {
			for _, warn := range r.Warnings {
				fmt.Fprintf(bw, "  warning: %s: %s\n", r.Name, warn)
			}
		}
		for _, warn := range o.Warnings {
			fmt.Fprintf(bw, "  warning: %s\n", warn)
		}
	}
	return bw.Flush()
}

func exitList(exits []Exit) string {
	if len(exits) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, x := range exits {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(hex(x.Addr))
		b.WriteByte(':')
		b.WriteString(x.Kind.String())
	}
	return b.String()
}

func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

func hexes(vs []uint64) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = hex(v)
	}
	return out
}

// The JSON shapes are part of the command-line interface: field names are
// stable, addresses are "0x..." strings (JSON numbers lose 64-bit
// precision), and lists are never null.
type (
	jsonReport struct {
		Objects []jsonObject `json:"objects"`
	}
	jsonObject struct {
		Path     string       `json:"path"`
		Bias     string       `json:"bias"`
		Regions  []jsonRegion `json:"regions"`
		Warnings []string     `json:"warnings"`
	}
	jsonRegion struct {
		Kind       string     `json:"kind"`
		Name       string     `json:"name"`
		Object     string     `json:"object"`
		Start      string     `json:"start"`
		End        string     `json:"end"`
		Commit     string     `json:"commit,omitempty"`
		Abort      string     `json:"abort,omitempty"`
		AbortJump  string     `json:"abort_jump,omitempty"`
		Descriptor string     `json:"descriptor,omitempty"`
		Exits      []jsonExit `json:"exits"`
		Indirect   []string   `json:"indirect"`
		Calls      []string   `json:"calls"`
		Source     string     `json:"source"`
		Warnings   []string   `json:"warnings"`
	}
	jsonExit struct {
		Addr string `json:"addr"`
		Kind string `json:"kind"`
	}
)

// WriteJSON prints the objects as one JSON document:
// {"objects": [{"path", "bias", "regions": [...], "warnings"}]}.
func WriteJSON(w io.Writer, objs []*Object) error {
	rep := jsonReport{Objects: make([]jsonObject, 0, len(objs))}
	for _, o := range objs {
		jo := jsonObject{Path: o.Path, Bias: hex(o.Bias), Regions: make([]jsonRegion, 0, len(o.Regions)), Warnings: nonNil(o.Warnings)}
		for _, r := range o.Regions {
			jr := jsonRegion{
				Kind: r.Kind.String(), Name: r.Name, Object: r.Object,
				Start: hex(r.Start), End: hex(r.End),
				Exits: make([]jsonExit, 0, len(r.Exits)), Indirect: hexes(r.Indirect), Calls: hexes(r.Calls),
				Source: r.Source, Warnings: nonNil(r.Warnings),
			}
			if r.Kind == KindCriticalSection {
				jr.Commit = jr.End
				jr.Abort = hex(r.Abort)
			}
			if r.AbortJump != 0 {
				jr.AbortJump = hex(r.AbortJump)
			}
			if r.Descriptor != 0 {
				jr.Descriptor = hex(r.Descriptor)
			}
			for _, x := range r.Exits {
				jr.Exits = append(jr.Exits, jsonExit{hex(x.Addr), x.Kind.String()})
			}
			jo.Regions = append(jo.Regions, jr)
		}
		rep.Objects = append(rep.Objects, jo)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
