package main

import (
	"fmt"
	"sort"
	"strings"
)

// Injection kinds.
const (
	killEngine = "kill-engine" // SIGKILL of the engine process
	killR      = "kill-r"      // SIGKILL of the Rscript flow process (the client)
	killTask   = "kill-task"   // SIGKILL of a running task (an Rscript child of the engine)
	flip       = "flip"        // one byte of a completed file changed
	truncate   = "truncate"    // a completed file cut short
	replace    = "replace"     // a completed file's content replaced by another blob's
	diskFull   = "disk-full"   // the datastore's tmpfs filled mid-run
)

var kinds = []string{killEngine, killR, killTask, flip, truncate, replace, diskFull}

// Outcomes of an injection.
const (
	held     = "held"     // every invariant held
	refused  = "refused"  // a read or resume of damaged data failed, naming it (never a value)
	missed   = "missed"   // the run ended before the injection point: not counted as an injection
	violated = "VIOLATED" // an invariant failed
	// known:<name> is a known failure of an area another change fixes
	// (see knownFailures), reported but not failing the suite.
)

// tally counts injections by kind and outcome, and keeps the findings.
type tally struct {
	counts   map[string]map[string]int
	findings []string
}

func newTally() *tally { return &tally{counts: map[string]map[string]int{}} }

func (t *tally) add(kind, outcome string) {
	if t.counts[kind] == nil {
		t.counts[kind] = map[string]int{}
	}
	t.counts[kind][outcome]++
}

// fired is the number of injections that happened (missed ones excluded).
func (t *tally) fired() int {
	n := 0
	for _, m := range t.counts {
		for o, c := range m {
			if o != missed {
				n += c
			}
		}
	}
	return n
}

func (t *tally) firedOf(kind string) int {
	n := 0
	for o, c := range t.counts[kind] {
		if o != missed {
			n += c
		}
	}
	return n
}

func (t *tally) total(outcome string) int {
	n := 0
	for _, m := range t.counts {
		n += m[outcome]
	}
	return n
}

// outcomes lists every outcome seen, in a stable order.
func (t *tally) outcomes() []string {
	set := map[string]bool{}
	for _, m := range t.counts {
		for o := range m {
			set[o] = true
		}
	}
	order := map[string]int{held: 0, refused: 1, missed: 2, violated: 9}
	var out []string
	for o := range set {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		oi, ok := order[out[i]]
		if !ok {
			oi = 5
		}
		oj, ok := order[out[j]]
		if !ok {
			oj = 5
		}
		if oi != oj {
			return oi < oj
		}
		return out[i] < out[j]
	})
	return out
}

// summary is the one line the suite ends with: injections per kind (with
// their outcomes) and per outcome.
func (t *tally) summary(seed int64, secs float64) string {
	var per []string
	for _, k := range kinds {
		m := t.counts[k]
		if len(m) == 0 {
			continue
		}
		var os []string
		for _, o := range t.outcomes() {
			if m[o] > 0 {
				os = append(os, fmt.Sprintf("%s %d", o, m[o]))
			}
		}
		per = append(per, fmt.Sprintf("%s=%d (%s)", k, t.firedOf(k), strings.Join(os, ", ")))
	}
	var outs []string
	for _, o := range t.outcomes() {
		outs = append(outs, fmt.Sprintf("%s=%d", o, t.total(o)))
	}
	return fmt.Sprintf("fault: seed %d: %d injections: %s; outcomes: %s; %.0f s",
		seed, t.fired(), strings.Join(per, " "), strings.Join(outs, " "), secs)
}
