package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

// entry is one artifact of a task that was recorded completed.
type entry struct {
	run, step, task, name string
	sha                   string // as recorded when the task was first seen completed
	stack                 string // the task's foreach position, to match the baseline
}

func (e *entry) key() string { return e.run + "/" + e.step + "/" + e.task + "/" + e.name }

// pathspec is the task's FLOW/RUN/STEP/TASK.
func (e *entry) pathspec() string { return flowName + "/" + e.run + "/" + e.step + "/" + e.task }

// results maps a task's place in the flow (step and foreach position) to
// its artifacts (name -> sha): what an uninterrupted run produces.
type results map[string]map[string]string

func place(step, stack string) string { return step + "|" + stack }

func stackKey(stack []datastore.Frame) string {
	parts := make([]string, len(stack))
	for i, f := range stack {
		parts[i] = f.Step + ":" + strconv.Itoa(f.Index)
	}
	return strings.Join(parts, "/")
}

// ledger remembers every artifact of every task of one datastore that was
// ever seen completed, with its content address: none may be lost or
// altered by what the suite does to the runs.
type ledger struct {
	root    string
	store   *datastore.Local
	entries map[string]*entry
	tasks   map[string]bool // RUN/STEP/TASK seen completed
}

func newLedger(root string) *ledger {
	return &ledger{root: root, store: datastore.NewLocal(root), entries: map[string]*entry{}, tasks: map[string]bool{}}
}

// runIDs lists the runs of the flow, oldest first.
func (l *ledger) runIDs() ([]string, error) {
	ids, err := l.store.ListRuns(context.Background(), flowName)
	if err != nil {
		return nil, err
	}
	sort.Slice(ids, func(i, j int) bool { a, _ := strconv.Atoi(ids[i]); b, _ := strconv.Atoi(ids[j]); return a < b })
	return ids, nil
}

// completedTasks reads a run's completed tasks from the datastore's files
// (what the engine recorded) with their artifact indexes.
func (l *ledger) completedTasks(runID string) (map[string]*datastore.Task, map[string]map[string]datastore.Artifact, error) {
	ctx := context.Background()
	steps, err := l.store.ListSteps(ctx, flowName, runID)
	if err != nil {
		return nil, nil, err
	}
	tasks := map[string]*datastore.Task{}
	arts := map[string]map[string]datastore.Artifact{}
	for _, step := range steps {
		ids, err := l.store.ListTasks(ctx, flowName, runID, step)
		if err != nil {
			return nil, nil, err
		}
		for _, id := range ids {
			t, err := l.store.GetTask(ctx, flowName, runID, step, id)
			if err != nil {
				return nil, nil, err
			}
			if t.Status != datastore.StatusCompleted {
				continue
			}
			a, err := l.store.GetArtifacts(ctx, flowName, runID, step, id)
			if err != nil {
				return nil, nil, err
			}
			k := runID + "/" + step + "/" + id
			tasks[k], arts[k] = t, a
		}
	}
	return tasks, arts, nil
}

// scan adds the artifacts of tasks completed since the last scan, and
// returns the problems it finds: a task seen completed before that is not
// any more or whose artifacts changed, and a newly completed task whose
// artifacts are not the uninterrupted run's (want; nil: not compared).
func (l *ledger) scan(want results) ([]string, error) {
	ids, err := l.runIDs()
	if err != nil {
		return nil, err
	}
	var problems []string
	seen := map[string]bool{}
	for _, runID := range ids {
		if _, err := l.store.GetRun(context.Background(), flowName, runID); err != nil {
			continue // a run folder being created (or one the engine could not record)
		}
		tasks, arts, err := l.completedTasks(runID)
		if err != nil {
			return problems, fmt.Errorf("read run %s: %w", runID, err)
		}
		for k, t := range tasks {
			seen[k] = true
			stack := stackKey(t.Stack)
			for name, a := range arts[k] {
				e := &entry{run: t.RunID, step: t.Step, task: t.TaskID, name: name, sha: a.SHA, stack: stack}
				if old, ok := l.entries[e.key()]; ok {
					if old.sha != a.SHA {
						problems = append(problems, fmt.Sprintf("altered: artifact %s of completed task %s now points at blob %s (was %s)", name, e.pathspec(), a.SHA, old.sha))
					}
					continue
				}
				if l.tasks[k] {
					problems = append(problems, fmt.Sprintf("altered: completed task %s gained artifact %s", e.pathspec(), name))
				}
				l.entries[e.key()] = e
				if want != nil {
					if w, ok := want[place(t.Step, stack)]; !ok || w[name] != a.SHA {
						problems = append(problems, fmt.Sprintf("wrong value: artifact %s of completed task %s is blob %s, an uninterrupted run's is %q", name, e.pathspec(), a.SHA, w[name]))
					}
				}
			}
			if want != nil {
				if w, ok := want[place(t.Step, stack)]; ok {
					for name := range w {
						if _, ok := arts[k][name]; !ok && !l.tasks[k] {
							problems = append(problems, fmt.Sprintf("wrong value: completed task %s has no artifact %s", t.Flow+"/"+k, name))
						}
					}
				}
			}
			l.tasks[k] = true
		}
	}
	for k := range l.tasks {
		if !seen[k] {
			problems = append(problems, fmt.Sprintf("lost: task %s/%s was completed and no longer is", flowName, k))
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// verify reads every artifact of the ledger through the reader (the
// engine): each must read back as the content it was recorded with. An
// entry for which allowed says so may fail instead, with an error naming
// it (its task, its blob, or the file damaged on purpose). Returns the
// problems, and how many reads failed as allowed.
func (l *ledger) verify(r *reader, allowed func(*entry) bool, damaged string) (problems []string, refused int) {
	keys := make([]string, 0, len(l.entries))
	for k := range l.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := l.entries[k]
		b, err := r.artifact(l.root, flowName, e.run, e.step, e.task, e.name)
		switch {
		case err == nil && sha(b) == e.sha:
		case err == nil:
			problems = append(problems, fmt.Sprintf("wrong value: artifact %s of %s read back as content hashing to %s, not its blob %s", e.name, e.pathspec(), sha(b), e.sha))
		case allowed != nil && allowed(e) && names(err.Error(), e, damaged):
			refused++
		case allowed != nil && allowed(e):
			problems = append(problems, fmt.Sprintf("unnamed error: reading artifact %s of %s failed without naming it: %v", e.name, e.pathspec(), err))
		default:
			problems = append(problems, fmt.Sprintf("lost: artifact %s of completed task %s cannot be read: %v", e.name, e.pathspec(), err))
		}
	}
	return problems, refused
}

// names reports whether an error message names what failed: the task,
// the artifact's blob, or the damaged file.
func names(msg string, e *entry, damaged string) bool {
	return mentions(msg, e.pathspec()) || strings.Contains(msg, e.sha) ||
		(damaged != "" && strings.Contains(msg, damaged))
}

// mentions reports whether msg holds the pathspec as a whole: .../work/4
// is not .../work/40.
func mentions(msg, pathspec string) bool {
	return regexp.MustCompile(regexp.QuoteMeta(pathspec) + `([^0-9]|$)`).MatchString(msg)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// resultsOf is what a run produced: its completed tasks' artifacts by
// place. complete is false if some task of it is not completed.
func (l *ledger) resultsOf(runID string) (results, error) {
	tasks, arts, err := l.completedTasks(runID)
	if err != nil {
		return nil, err
	}
	out := results{}
	for k, t := range tasks {
		m := map[string]string{}
		for name, a := range arts[k] {
			m[name] = a.SHA
		}
		out[place(t.Step, stackKey(t.Stack))] = m
	}
	return out, nil
}

// diff describes how got differs from want ("" if equal).
func diff(want, got results) string {
	var d []string
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			d = append(d, "no completed task at "+p)
			continue
		}
		for name, s := range w {
			if g[name] != s {
				d = append(d, fmt.Sprintf("%s: artifact %s is %q, want %s", p, name, g[name], s))
			}
		}
		for name := range g {
			if _, ok := w[name]; !ok {
				d = append(d, fmt.Sprintf("%s: unexpected artifact %s", p, name))
			}
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			d = append(d, "unexpected task at "+p)
		}
	}
	sort.Strings(d)
	if len(d) > 5 {
		d = append(d[:5], fmt.Sprintf("(and %d more)", len(d)-5))
	}
	return strings.Join(d, "; ")
}
