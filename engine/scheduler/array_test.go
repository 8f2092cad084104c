package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// arrayExec is an ArrayExecutor: the first attempts of a fan-out wait at a
// barrier until every split of their group has been handed over (as an
// array job's submission would), then run like fakeExec's.
type arrayExec struct {
	*fakeExec
	failFirst int  // this split's first attempt fails
	block     bool // array children run until cancelled

	mu     sync.Mutex
	groups map[string][]ArraySplit
	all    map[string]chan struct{}
	alone  []*TaskSpec // attempts without Launch.Array
}

func (a *arrayExec) RunsArrays() {}

// barrierWait bounds the wait for the rest of a group: without the
// capability the scheduler hands splits over --max-workers at a time and
// the group never fills.
const barrierWait = 10 * time.Second

func (a *arrayExec) Run(ctx context.Context, l *Launch) (int, error) {
	if l.Array == nil {
		if l.Spec.Step == "work" {
			a.mu.Lock()
			a.alone = append(a.alone, l.Spec)
			a.mu.Unlock()
		}
		return a.fakeExec.Run(ctx, l)
	}
	a.mu.Lock()
	if a.groups == nil {
		a.groups, a.all = map[string][]ArraySplit{}, map[string]chan struct{}{}
	}
	g := l.Array.Group
	a.groups[g] = append(a.groups[g], *l.Array)
	if a.all[g] == nil {
		a.all[g] = make(chan struct{})
	}
	full := a.all[g]
	if len(a.groups[g]) == l.Array.Size {
		close(full)
	}
	a.mu.Unlock()
	select {
	case <-full:
	case <-time.After(barrierWait):
		return -1, errors.New("the rest of the fan-out was never handed over")
	}
	if a.block {
		l.Started(1)
		<-ctx.Done()
		return -1, ctx.Err()
	}
	if l.Array.Index == a.failFirst {
		l.Started(1)
		return 1, nil
	}
	return a.fakeExec.Run(ctx, l)
}

func arrayGraph(t *testing.T) *graph.Graph {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "params"},
		{Name: "work", Next: []string{"join"}, Decorators: []graph.Decorator{
			{Name: fakeCloud}, {Name: "retry", Args: map[string]string{"times": "1"}}}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// All splits of a foreach on an ArrayExecutor are handed over at once,
// whatever --max-workers says; a failed child is retried alone (without
// Launch.Array), and each split's attempts are its own.
func TestArrayExecutorGetsAllSplitsAtOnce(t *testing.T) {
	local := &fakeExec{steps: map[string]stepFunc{"start": splits(5)}}
	ax := &arrayExec{fakeExec: &fakeExec{steps: local.steps}, failFirst: 2}
	r, store := newRun(t, arrayGraph(t), local, Options{MaxWorkers: 1})
	r.Executors = registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", ax)})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if len(ax.groups) != 1 {
		t.Fatalf("%d groups, want 1: %v", len(ax.groups), ax.groups)
	}
	seen := map[int]bool{}
	for _, members := range ax.groups {
		if len(members) != 5 {
			t.Fatalf("%d splits handed over, want 5", len(members))
		}
		for _, m := range members {
			if m.Size != 5 || seen[m.Index] {
				t.Fatalf("bad member %+v of %v", m, members)
			}
			seen[m.Index] = true
		}
	}
	if len(ax.alone) != 1 || ax.alone[0].Index != 2 || ax.alone[0].Attempt != 1 {
		t.Fatalf("retries run alone: %+v, want split 2's attempt 1 only", ax.alone)
	}
	ids, err := store.ListTasks(bg, "F", r.RunID(), "work")
	if err != nil || len(ids) != 5 {
		t.Fatalf("work tasks %v, %v", ids, err)
	}
	for _, id := range ids {
		task, err := store.GetTask(bg, "F", r.RunID(), "work", id)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if task.Stack[0].Index == 2 {
			want = 2
		}
		if len(task.Attempts) != want || task.Status != datastore.StatusCompleted {
			t.Errorf("split %d: %d attempts, status %s; want %d, completed", task.Stack[0].Index, len(task.Attempts), task.Status, want)
		}
	}
	if joins := local.stepCalls("join"); len(joins) != 1 || len(joins[0].Inputs) != 5 {
		t.Fatalf("join: %+v", joins)
	}
}

// Cancelling a run cancels every array child; the run is interrupted.
func TestArrayChildrenAreCancelled(t *testing.T) {
	local := &fakeExec{steps: map[string]stepFunc{"start": splits(4)}}
	ax := &arrayExec{fakeExec: &fakeExec{steps: local.steps}, failFirst: -1, block: true}
	r, _ := newRun(t, arrayGraph(t), local, Options{MaxWorkers: 1})
	r.Executors = registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", ax)})
	if err := r.Prepare(bg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	go func() {
		for {
			ax.mu.Lock()
			n := 0
			for _, m := range ax.groups {
				n += len(m)
			}
			ax.mu.Unlock()
			if n == 4 {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	err := r.Execute(ctx)
	if !IsInterrupted(err) {
		t.Fatalf("Execute: %v, want interrupted", err)
	}
	if n := len(ax.alone); n != 0 {
		t.Fatalf("%d attempts retried after the cancel", n)
	}
}
