package regions

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints each object's regions as a table with their warnings.
func WriteText(w io.Writer, objs []*Object) error {
	for _, o := range objs {
		fmt.Fprintf(w, "%s: %d regions\n", o.Path, len(o.Regions))
		if len(o.Regions) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  KIND\tNAME\tSTART\tCOMMIT\tABORT\tEXITS\tSOURCE")
			for _, r := range o.Regions {
				var exits []string
				for _, x := range r.Exits {
					if x.Kind == ExitCommit || x.Kind == ExitAbort {
						continue
					}
					exits = append(exits, fmt.Sprintf("%#x:%s", x.Addr, x.Kind))
				}
				ex := strings.Join(exits, ",")
				if ex == "" {
					ex = "-"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%#x\t%#x\t%#x\t%s\t%s\n", r.Kind, r.Name, r.Start, r.End, r.Abort, ex, r.Source)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		for _, r := range o.Regions {
			for _, warn := range r.Warnings {
				fmt.Fprintf(w, "  warning: %s: %s\n", r.Name, warn)
			}
		}
		for _, warn := range o.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", warn)
		}
	}
	return nil
}

type jsonExit struct {
	Addr string `json:"addr"`
	Kind string `json:"kind"`
}

type jsonRegion struct {
	Kind       string     `json:"kind"`
	Name       string     `json:"name"`
	Start      string     `json:"start"`
	Commit     string     `json:"commit"`
	Abort      string     `json:"abort,omitempty"`
	Descriptor string     `json:"descriptor,omitempty"`
	Exits      []jsonExit `json:"exits"`
	Indirect   []string   `json:"indirect,omitempty"`
	Calls      []string   `json:"calls,omitempty"`
	Source     string     `json:"source"`
	Warnings   []string   `json:"warnings,omitempty"`
}

type jsonObject struct {
	Path     string       `json:"path"`
	Bias     string       `json:"bias"`
	Regions  []jsonRegion `json:"regions"`
	Warnings []string     `json:"warnings,omitempty"`
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }

func hexes(vs []uint64) []string {
	var out []string
	for _, v := range vs {
		out = append(out, hex(v))
	}
	return out
}

// WriteJSON prints the objects as one JSON document.
func WriteJSON(w io.Writer, objs []*Object) error {
	out := make([]jsonObject, 0, len(objs))
	for _, o := range objs {
		jo := jsonObject{Path: o.Path, Bias: hex(o.Bias), Regions: []jsonRegion{}, Warnings: o.Warnings}
		for _, r := range o.Regions {
			jr := jsonRegion{Kind: r.Kind.String(), Name: r.Name, Start: hex(r.Start), Commit: hex(r.End),
				Source: r.Source, Warnings: r.Warnings, Exits: []jsonExit{}, Indirect: hexes(r.Indirect), Calls: hexes(r.Calls)}
			if r.Abort != 0 {
				jr.Abort = hex(r.Abort)
			}
			if r.Descriptor != 0 {
				jr.Descriptor = hex(r.Descriptor)
			}
			for _, x := range r.Exits {
				jr.Exits = append(jr.Exits, jsonExit{hex(x.Addr), x.Kind.String()})
			}
			jo.Regions = append(jo.Regions, jr)
		}
		out = append(out, jo)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
