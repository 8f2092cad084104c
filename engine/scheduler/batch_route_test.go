package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/graph"
)

// Steps with the batch decorator go to the Batch executor (with their
// merged decorators), the others stay local; --with batch sends every step.
func TestBatchStepsGoToTheBatchExecutor(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{
			{Name: "batch", Args: map[string]string{"cpu": "2"}}, {Name: "resources", Args: map[string]string{"memory": "9000"}}}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	local := &fakeExec{}
	remote := &decoExec{fakeExec: &fakeExec{}}
	r, _ := newRun(t, g, local, Options{})
	r.Batch = remote
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if len(remote.stepCalls("start")) != 1 || len(local.stepCalls("start")) != 0 {
		t.Errorf("start: %d batch, %d local runs", len(remote.stepCalls("start")), len(local.stepCalls("start")))
	}
	if len(remote.stepCalls("end")) != 0 || len(local.stepCalls("end")) != 1 {
		t.Errorf("end: %d batch, %d local runs", len(remote.stepCalls("end")), len(local.stepCalls("end")))
	}
	if d := remote.decos["start"]; d["batch"].Args["cpu"] != "2" || d["resources"].Args["memory"] != "9000" {
		t.Errorf("decorators handed to the Batch executor: %v", d)
	}

	local, remote = &fakeExec{}, &decoExec{fakeExec: &fakeExec{}}
	r, _ = newRun(t, foreachGraph(t), local, Options{With: []graph.Decorator{{Name: "batch"}}})
	local.steps = map[string]stepFunc{"start": splits(3)}
	remote.steps = local.steps
	r.Batch = remote
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if len(local.calls) != 0 || len(remote.calls) != 6 {
		t.Errorf("--with batch: %d local, %d batch runs, want 0 and 6", len(local.calls), len(remote.calls))
	}

	// Without a Batch executor nothing is written.
	r, store := newRun(t, g, &fakeExec{}, Options{})
	if err := r.Prepare(); err == nil || !strings.Contains(err.Error(), "METAFLOW_BATCH_JOB_QUEUE") {
		t.Errorf("prepare without a Batch executor: %v", err)
	}
	if runs, _ := store.ListRuns("F"); len(runs) != 0 {
		t.Errorf("runs written: %v", runs)
	}
}

type decoExec struct {
	*fakeExec
	decos map[string]map[string]graph.Decorator
}

func (d *decoExec) Run(ctx context.Context, l *Launch) (int, error) {
	d.mu.Lock()
	if d.decos == nil {
		d.decos = map[string]map[string]graph.Decorator{}
	}
	d.decos[l.Spec.Step] = l.Decorators
	d.mu.Unlock()
	return d.fakeExec.Run(ctx, l)
}
