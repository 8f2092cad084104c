package scheduler

import "strings"

// ArrayExecutor is an executor that runs the splits of one foreach together
// (a cluster scheduler's array job: one submission for many tasks). The
// scheduler starts the first attempts of such a step's foreach splits all at
// once, not bounded by --max-workers (the backend bounds what runs), and
// calls Run for each with Launch.Array naming the fan-out, so the executor
// can gather the calls of one group into one submission. Each Run still
// reports its own attempt (its job id, logs, outputs, exit code); retries
// (attempt > 0) come without Launch.Array and run alone.
type ArrayExecutor interface {
	Executor
	// RunsArrays marks the capability; it is never called.
	RunsArrays()
}

// ArraySplit says which fan-out an attempt belongs to.
type ArraySplit struct {
	// Group is the same for every split of one foreach (run, step and the
	// foreach task).
	Group string
	// Size is the number of splits of the foreach: the executor can submit
	// once that many have arrived (some may never come: a split cloned on
	// resume, or one that failed before it ran).
	Size int
	// Index is the split's foreach index.
	Index int
}

// arraySplit is p's ArraySplit when its step runs on an ArrayExecutor and p
// is a split of a foreach; nil otherwise.
func (r *Run) arraySplit(p *pending) *ArraySplit {
	ex, ok := r.execs[p.step]
	if !ok {
		return nil
	}
	if _, ok := ex.exec.(ArrayExecutor); !ok {
		return nil
	}
	st := r.Graph.Steps[p.step]
	n := len(p.stack)
	if st == nil || st.Join || n == 0 || len(p.inputs) == 0 || p.inputs[0].step != p.stack[n-1].Step {
		return nil
	}
	top := p.stack[n-1]
	return &ArraySplit{
		Group: strings.Join([]string{r.meta.RunID, p.step, p.inputs[0].step, p.inputs[0].id}, "/"),
		Size:  top.Count, Index: top.Index,
	}
}

// takeArraySplits removes from queue the tasks an ArrayExecutor runs as
// array children (marking them with their ArraySplit) and returns them.
func (r *Run) takeArraySplits(queue []*pending) (rest, arrays []*pending) {
	rest = queue[:0:0]
	for _, p := range queue {
		if a := r.arraySplit(p); a != nil {
			p.array = a
			arrays = append(arrays, p)
			continue
		}
		rest = append(rest, p)
	}
	return rest, arrays
}
