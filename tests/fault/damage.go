package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// target is a completed file the suite damages.
type target struct {
	path  string
	class string // "blob", "_run.json", "_task.json" (which holds the artifact index)
	sha   string // a blob's
	run   string // a metadata file's run
	task  string // RUN/STEP/TASK of a task's file
}

// targets lists the datastore's completed files: blobs, and the run,
// task and artifact index records of ended runs. Only blobs that an entry
// of scope (a run id; "" for all) points at, and only scope's records.
func (c *chain) targets(scope string) map[string][]target {
	out := map[string][]target{}
	blobs := map[string]bool{}
	for _, e := range c.ledger.entries {
		if scope == "" || e.run == scope {
			blobs[e.sha] = true
		}
	}
	for _, sha := range sortedSet(blobs) {
		p := filepath.Join(c.root, flowName, "data", sha[:2], sha)
		if _, err := os.Stat(p); err == nil {
			out["blob"] = append(out["blob"], target{path: p, class: "blob", sha: sha})
		}
	}
	for _, id := range c.recorded() {
		if scope != "" && id != scope {
			continue
		}
		out["_run.json"] = append(out["_run.json"], target{path: filepath.Join(c.root, flowName, id, "_run.json"), class: "_run.json", run: id})
		for _, k := range sortedSet(c.ledger.tasks) {
			if !strings.HasPrefix(k, id+"/") {
				continue
			}
			for _, f := range []string{"_task.json"} {
				out[f] = append(out[f], target{path: filepath.Join(c.root, flowName, k, f), class: f, run: id, task: k})
			}
		}
	}
	return out
}

// readNext lists the blobs that the first step a resume of run runs
// reads from cloned tasks: the splits' sq for a join, the join's total for
// the end step (what the flow's steps read of their inputs).
func (c *chain) readNext(run string) []target {
	reads := map[string]struct{ from, name string }{"join": {"work", "sq"}, "end": {"join", "total"}}
	next, _ := c.resumeFrom(run)
	r, ok := reads[next]
	if !ok {
		return nil
	}
	var out []target
	for _, k := range sortedKeys(c.ledger.entries) {
		e := c.ledger.entries[k]
		if e.run == run && e.step == r.from && e.name == r.name {
			p := filepath.Join(c.root, flowName, "data", e.sha[:2], e.sha)
			out = append(out, target{path: p, class: "blob", sha: e.sha})
		}
	}
	return out
}

// steps are the flow's steps in order, with their number of tasks.
var steps = []struct {
	name  string
	tasks int
}{{"start", 1}, {"work", 3}, {"join", 1}, {"end", 1}}

// resumeFrom is the step a resume of run starts from (its first step with
// a task not seen completed) and how many tasks it then runs.
func (c *chain) resumeFrom(run string) (string, int) {
	done := map[string]int{}
	for k := range c.ledger.tasks {
		if parts := strings.Split(k, "/"); len(parts) == 3 && parts[0] == run {
			done[parts[1]]++
		}
	}
	left := 0
	from := ""
	for _, st := range steps {
		if from == "" && done[st.name] < st.tasks {
			from = st.name
		}
		if from != "" {
			left += st.tasks
		}
	}
	return from, left
}

// damage returns content made from orig by kind: one byte changed, cut
// short, or another blob's content (other).
func damage(rng *rand.Rand, kind string, orig, other []byte) []byte {
	switch kind {
	case flip:
		b := append([]byte{}, orig...)
		if len(b) > 0 {
			b[rng.Intn(len(b))] ^= byte(1 + rng.Intn(255))
		}
		return b
	case truncate:
		if len(orig) == 0 {
			return orig
		}
		return append([]byte{}, orig[:rng.Intn(len(orig))]...)
	default:
		return append([]byte{}, other...)
	}
}

// mutate damages one completed file of the chain (of run scope's, if not
// "") with kind and checks what reads it: every artifact reads back as
// recorded or, if the damage reaches it, fails naming it; the CLI agrees;
// nothing reads running. With a scope (a killed run), it then resumes
// that run: the resume must complete with an uninterrupted run's results
// or fail naming the damage. The file is restored afterwards.
func (c *chain) mutate(kind, scope string) {
	// What completed since the last scan (the final resume) is in the
	// ledger, and was checked against the uninterrupted run's.
	pre, err := c.ledger.scan(c.s.want)
	if err != nil {
		pre = append(pre, "lost: "+err.Error())
	}
	all := c.targets(scope)
	classes := []string{"blob", "blob", "blob", "_run.json", "_task.json", "_task.json"}
	if scope != "" {
		// Before a resume, mostly blobs: the resumed tasks read them.
		classes = append(classes, "blob", "blob")
	}
	var cands []target
	for len(cands) == 0 {
		cls := classes[c.s.rng.Intn(len(classes))]
		cands = all[cls]
		if len(all["blob"])+len(all["_run.json"])+len(all["_task.json"]) == 0 {
			c.s.logf("%s: no completed file to damage in chain %d", kind, c.id)
			return
		}
	}
	t := cands[c.s.rng.Intn(len(cands))]
	if scope != "" && (c.killK > 0 || c.s.rng.Intn(2) == 0) {
		// Before a resume, often a blob the resumed run's first step reads,
		// if there is one: that is where a damaged input can become a value.
		if next := c.readNext(scope); len(next) > 0 {
			t = next[c.s.rng.Intn(len(next))]
		}
	}
	orig, err := os.ReadFile(t.path)
	if err != nil {
		c.s.record(kind, t.path, []string{"lost: " + err.Error()}, false)
		return
	}
	st, _ := os.Stat(t.path)
	var other []byte
	if kind == replace {
		var blobs []target
		for _, b := range all["blob"] {
			if b.path != t.path {
				blobs = append(blobs, b)
			}
		}
		if len(blobs) == 0 {
			blobs = c.targets("")["blob"]
		}
		for _, i := range c.s.rng.Perm(len(blobs)) {
			if ob, err := os.ReadFile(blobs[i].path); err == nil && !bytes.Equal(ob, orig) {
				other = ob
				break
			}
		}
		if other == nil {
			other = []byte("X\n") // no other blob: still not the file's content
		}
	}
	bad := damage(c.s.rng, kind, orig, other)
	if bytes.Equal(bad, orig) {
		return // nothing would change (an empty file): not an injection
	}
	rel := strings.TrimPrefix(t.path, c.root+"/")
	what := fmt.Sprintf("chain %d, %s of %s (%d -> %d bytes)", c.id, kind, rel, len(orig), len(bad))
	damaged := t.path
	if t.class == "blob" {
		damaged = t.sha
	}
	// Which reads the damage may fail: the engine's ReadArtifact and the
	// CLI read the task record (it holds the artifact index) and the blob.
	reaches := func(e *entry) bool {
		switch t.class {
		case "blob":
			return e.sha == t.sha
		case "_task.json":
			return e.run+"/"+e.step+"/"+e.task == t.task
		}
		return false
	}
	// The CLI reads up to two artifacts the damage reaches (else one of the
	// same run), before and after.
	var sample []*entry
	for _, k := range sortedKeys(c.ledger.entries) {
		if e := c.ledger.entries[k]; reaches(e) && len(sample) < 2 {
			sample = append(sample, e)
		}
	}
	if len(sample) == 0 {
		for _, k := range sortedKeys(c.ledger.entries) {
			if e := c.ledger.entries[k]; (t.run == "" || e.run == t.run) && len(sample) < 1 {
				sample = append(sample, e)
			}
		}
	}
	before := make([]string, len(sample))
	problems := pre
	for i, e := range sample {
		out, code := c.cliArtifact(e)
		if code != 0 {
			problems = append(problems, fmt.Sprintf("lost: `metaflow-engine artifact %s %s` failed before the damage: %s", e.pathspec(), e.name, out))
		}
		before[i] = out
	}
	// A damaged blob is read with the R client too, before and after.
	var rBefore map[string]string
	if t.class == "blob" && scope == "" {
		var reached []*entry
		for _, e := range sample {
			if reaches(e) {
				reached = append(reached, e)
			}
		}
		if len(reached) > 0 {
			var err error
			if rBefore, err = c.rClientRead(reached); err != nil {
				problems = append(problems, "lost: "+err.Error())
			}
			for k, v := range rBefore {
				if !strings.HasPrefix(v, "OK ") {
					problems = append(problems, fmt.Sprintf("lost: the R client could not read %s before the damage: %s", k, v))
				}
			}
		}
	}
	if err := os.WriteFile(t.path, bad, st.Mode().Perm()); err != nil {
		c.s.record(kind, what, []string{"could not damage the file: " + err.Error()}, false)
		return
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := os.WriteFile(t.path, orig, st.Mode().Perm()); err != nil {
				problems = append(problems, "could not restore the damaged file: "+err.Error())
			}
			_ = os.Chmod(t.path, st.Mode().Perm())
		}
	}
	defer restore()

	p, refusedN := c.ledger.verify(c.s.reader, func(e *entry) bool { return reaches(e) }, damaged)
	problems = append(problems, p...)
	for i, e := range sample {
		out, code := c.cliArtifact(e)
		switch {
		case code == 0 && out != before[i]:
			problems = append(problems, fmt.Sprintf("wrong value: `metaflow-engine artifact %s %s` printed %q, before the damage %q", e.pathspec(), e.name, short(out), short(before[i])))
		case code == 0:
		case !reaches(e):
			problems = append(problems, fmt.Sprintf("lost: `metaflow-engine artifact %s %s` failed though the damage does not reach it: %s", e.pathspec(), e.name, short(out)))
		case !names(out, e, damaged):
			problems = append(problems, fmt.Sprintf("unnamed error: `metaflow-engine artifact %s %s` failed without naming it: %s", e.pathspec(), e.name, short(out)))
		default:
			refusedN++
		}
	}
	if len(rBefore) > 0 {
		var reached []*entry
		for _, e := range sample {
			if _, ok := rBefore[e.key()]; ok {
				reached = append(reached, e)
			}
		}
		after, err := c.rClientRead(reached)
		if err != nil {
			problems = append(problems, "lost: "+err.Error())
		}
		for _, e := range reached {
			a, ok := after[e.key()]
			switch {
			case !ok:
			case a == rBefore[e.key()]:
			case strings.HasPrefix(a, "OK "):
				problems = append(problems, knownAs("client-reads-unverified", fmt.Sprintf("wrong value: the R client read artifact %s of %s from the damaged blob as another value", e.name, e.pathspec())))
			case !names(a, e, damaged):
				problems = append(problems, knownAs("client-reads-unverified", fmt.Sprintf("unnamed error: the R client's read of artifact %s of %s failed without naming it: %s", e.name, e.pathspec(), short(a))))
			default:
				refusedN++
			}
		}
	}
	// Statuses: a damaged run record may fail to read (naming it); nothing
	// reads running. (A damaged record cannot be asked for the truth about
	// its own heartbeat: its run is not held to the running rule.)
	skip := ""
	if t.class == "_run.json" || t.class == "_task.json" {
		skip = t.run
	}
	left, sp := c.running(skip)
	problems = append(problems, sp...)
	for _, l := range left {
		if skip == "" || !strings.HasPrefix(strings.TrimPrefix(strings.TrimPrefix(l, "run "), "task "), skip) {
			problems = append(problems, "stuck: "+l+" reads running after "+kind+" of "+rel)
		}
	}
	if scope == "" {
		restore()
		c.s.record(kind, what, problems, refusedN > 0)
		return
	}
	// A run that completed after all (the kill came too late for it) is
	// not resumed: plain resume refuses a completed run, by design.
	if id, done := c.newestCompleted(); done && id == scope {
		restore()
		c.done = true
		c.s.record(kind, what+" (its run had completed: nothing to resume)", problems, refusedN > 0)
		return
	}
	// Resume the damaged run.
	what += ", then resume"
	cl, err := c.client("resume")
	if err != nil {
		c.s.record(kind, what, append(problems, err.Error()), false)
		return
	}
	code, ok := cl.wait(3 * time.Minute)
	if !ok {
		cl.kill()
		problems = append(problems, "stuck: the resume did not end within 3 minutes")
	}
	restore()
	switch {
	case !ok:
	case code == 0:
		id, done := c.newestCompleted()
		if !done {
			problems = append(problems, fmt.Sprintf("resume failed: it exited 0 but its run %s does not read completed", id))
			break
		}
		c.done = true
		for _, d := range c.compare(id) {
			if t.class == "blob" {
				d = knownAs("task-reads-unverified", d)
			}
			problems = append(problems, d)
		}
	default:
		out := cl.output()
		named := strings.Contains(out, damaged) || strings.Contains(out, rel) ||
			(t.task != "" && mentions(out, flowName+"/"+t.task))
		for _, e := range c.ledger.entries {
			if reaches(e) && names(out, e, "") {
				named = true
			}
		}
		switch {
		case named:
			refusedN++
		case t.class == "blob":
			// A resumed task read the damaged input by path, unchecked,
			// and failed on the value it got.
			problems = append(problems, knownAs("task-reads-unverified", fmt.Sprintf("unnamed error: the resume of the damaged run failed without naming %s:\n%s", rel, indent(cl.tail(6)))))
		default:
			problems = append(problems, fmt.Sprintf("unnamed error: the resume of the damaged run failed without naming %s:\n%s", rel, indent(cl.tail(6))))
		}
	}
	c.s.record(kind, what, problems, refusedN > 0)
}

func short(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
