package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// bg is the context of the tests' datastore reads.
var bg = context.Background()

// stepFunc simulates a step: it returns the artifacts to store (name -> bytes),
// the foreach count (-1 if none) and an exit code.
type stepFunc func(s *TaskSpec) (map[string][]byte, int, int)

// fakeExec runs steps in-process and records what it saw.
type fakeExec struct {
	steps   map[string]stepFunc
	mu      sync.Mutex
	calls   []*TaskSpec
	running int32
	peak    int32
	block   string // tasks of this step wait until cancelled
	fast    bool   // no simulated work (benchmarks)
}

func (f *fakeExec) Run(ctx context.Context, l *Launch) (int, error) {
	n := atomic.AddInt32(&f.running, 1)
	defer atomic.AddInt32(&f.running, -1)
	for {
		p := atomic.LoadInt32(&f.peak)
		if n <= p || atomic.CompareAndSwapInt32(&f.peak, p, n) {
			break
		}
	}
	spec := *l.Spec
	f.mu.Lock()
	f.calls = append(f.calls, &spec)
	f.mu.Unlock()
	l.Started(1000)
	l.Line(false, "hello from "+spec.Step)
	if f.block == spec.Step {
		<-ctx.Done()
		return -1, nil
	}
	if !f.fast {
		time.Sleep(2 * time.Millisecond)
	}
	fn := f.steps[spec.Step]
	arts, count, code := map[string][]byte{}, -1, 0
	if fn != nil {
		arts, count, code = fn(&spec)
	}
	if code != 0 {
		os.WriteFile(filepath.Join(spec.OutputDir, "_error.txt"), []byte("Error in "+spec.Step+": boom"), 0o644)
		return code, nil
	}
	var names []string
	for name, b := range arts {
		names = append(names, name)
		if err := os.WriteFile(filepath.Join(spec.OutputDir, name+".mpk"), b, 0o644); err != nil {
			return -1, err
		}
	}
	res, _ := msgpack.Marshal(map[string]any{"artifacts": names, "merged": []any{}, "foreach_count": count})
	return 0, os.WriteFile(filepath.Join(spec.OutputDir, "_result.mpk"), res, 0o644)
}

func (f *fakeExec) stepCalls(step string) []*TaskSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*TaskSpec
	for _, c := range f.calls {
		if c.Step == step {
			out = append(out, c)
		}
	}
	return out
}

func foreachGraph(t *testing.T) *graph.Graph {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "params"},
		{Name: "work", Next: []string{"join"}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func newRun(t *testing.T, g *graph.Graph, ex Executor, opts Options) (*Run, *datastore.Local) {
	t.Helper()
	store := datastore.NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	if opts.MaxWorkers == 0 {
		opts.MaxWorkers = 16
	}
	if opts.MaxNumSplits == 0 {
		opts.MaxNumSplits = 100
	}
	return &Run{Graph: g, Store: store, Exec: ex, Opts: opts, Code: []byte("code")}, store
}

func splits(n int) stepFunc {
	return func(s *TaskSpec) (map[string][]byte, int, int) {
		return map[string][]byte{"params": []byte(fmt.Sprint(n))}, n, 0
	}
}

func execute(t *testing.T, r *Run) error {
	t.Helper()
	if err := r.Prepare(context.Background()); err != nil {
		return err
	}
	return r.Execute(context.Background())
}

func TestForeachJoinRespectsMaxWorkers(t *testing.T) {
	ex := &fakeExec{steps: map[string]stepFunc{"start": splits(7)}}
	r, store := newRun(t, foreachGraph(t), ex, Options{MaxWorkers: 2})
	var lines []string
	r.Emit = func(e Event) { lines = append(lines, e.Line) }
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if got := len(ex.stepCalls("work")); got != 7 {
		t.Fatalf("work ran %d times, want 7", got)
	}
	if ex.peak > 2 {
		t.Fatalf("peak concurrency %d exceeds max workers 2", ex.peak)
	}
	joins := ex.stepCalls("join")
	if len(joins) != 1 || len(joins[0].Inputs) != 7 {
		t.Fatalf("join should run once with 7 inputs, got %+v", joins)
	}
	// Inputs arrive in split order, whatever order the splits finished in.
	for i, in := range joins[0].Inputs {
		task, err := store.GetTask(bg, "F", r.RunID(), "work", in.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if task.Stack[0].Index != i {
			t.Fatalf("join input %d is split %d", i, task.Stack[0].Index)
		}
	}
	works := ex.stepCalls("work")
	for _, w := range works {
		if w.Input == nil || w.Index != w.Input.Index {
			t.Fatalf("split task without its input: %+v", w)
		}
	}
	run, _ := store.GetRun(bg, "F", r.RunID())
	if run.Status != datastore.StatusCompleted {
		t.Fatalf("run status %s", run.Status)
	}
	if len(run.Graph) != 4 || run.Graph[0].Name != "start" || run.Graph[0].Foreach != "params" || !run.Graph[2].Join {
		t.Fatalf("graph not recorded: %+v", run.Graph)
	}
	if !strings.Contains(lines[len(lines)-1], "Done!") {
		t.Fatalf("last line %q", lines[len(lines)-1])
	}
	if !strings.Contains(strings.Join(lines, "\n"), "/start/1 (pid 1000)] Task is starting.") {
		t.Fatalf("no Metaflow-style task line in:\n%s", strings.Join(lines, "\n"))
	}
}

func TestMaxNumSplitsFailsBeforeLaunching(t *testing.T) {
	ex := &fakeExec{steps: map[string]stepFunc{"start": splits(101)}}
	r, store := newRun(t, foreachGraph(t), ex, Options{})
	err := execute(t, r)
	if err == nil || !strings.Contains(err.Error(), "101 splits, more than --max-num-splits 100") {
		t.Fatalf("want max-num-splits error, got %v", err)
	}
	if n := len(ex.stepCalls("work")); n != 0 {
		t.Fatalf("%d splits launched", n)
	}
	run, _ := store.GetRun(bg, "F", r.RunID())
	if run.Status != datastore.StatusFailed {
		t.Fatalf("run status %s", run.Status)
	}
}

func TestStaticBranchJoin(t *testing.T) {
	g, err := graph.New("B", []graph.Step{
		{Name: "start", Next: []string{"a", "b"}},
		{Name: "a", Next: []string{"join"}},
		{Name: "b", Next: []string{"join"}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ex := &fakeExec{steps: map[string]stepFunc{}}
	r, _ := newRun(t, g, ex, Options{})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	j := ex.stepCalls("join")
	if len(j) != 1 || len(j[0].Inputs) != 2 || j[0].Inputs[0].Step != "a" || j[0].Inputs[1].Step != "b" {
		t.Fatalf("join inputs wrong: %+v", j)
	}
}

func TestRetryCatchAndFailure(t *testing.T) {
	failing := map[string]stepFunc{"start": func(*TaskSpec) (map[string][]byte, int, int) { return nil, -1, 1 }}
	linear := func() *graph.Graph {
		g, _ := graph.New("L", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
		return g
	}
	cases := []struct {
		name     string
		with     []graph.Decorator
		attempts int
		ok       bool
	}{
		{"fails", nil, 1, false},
		{"retries", []graph.Decorator{{Name: "retry", Args: map[string]string{"times": "2"}}}, 3, false},
		{"catches", []graph.Decorator{{Name: "catch", Args: map[string]string{"var": "err"}}}, 1, true},
		{"catches without var", []graph.Decorator{{Name: "catch"}}, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ex := &fakeExec{steps: failing}
			r, store := newRun(t, linear(), ex, Options{With: c.with})
			err := execute(t, r)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if !c.ok && !strings.Contains(err.Error(), "Error in start: boom") {
				t.Fatalf("failure should carry the R error, got %v", err)
			}
			if n := len(ex.stepCalls("start")); n != c.attempts {
				t.Fatalf("%d attempts, want %d", n, c.attempts)
			}
			task, _ := store.GetTask(bg, "L", r.RunID(), "start", "1")
			if len(task.Attempts) != c.attempts {
				t.Fatalf("recorded %d attempts, want %d", len(task.Attempts), c.attempts)
			}
			if c.ok {
				// The error stays in the record; in the artifact var names
				// only (none without var, as Metaflow's catch).
				if task.Status != datastore.StatusCompleted || !strings.Contains(task.Attempts[0].Error, "boom") {
					t.Fatalf("caught task reads %s %+v", task.Status, task.Attempts)
				}
				arts, _ := store.GetArtifacts(bg, "L", r.RunID(), "start", "1")
				want := c.with[0].Args["var"]
				for name := range arts {
					if name != want && (name == "err" || name == "exception") {
						t.Fatalf("unexpected artifact %s: %v", name, arts)
					}
				}
				if _, ok := arts[want]; want != "" && !ok {
					t.Fatalf("catch var not stored: %v", arts)
				}
			}
		})
	}
}

func TestResumeClonesSuccessfulTasks(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	steps := map[string]stepFunc{
		"start": splits(4),
		"work": func(s *TaskSpec) (map[string][]byte, int, int) {
			if fail.Load() && s.Input.Index == 2 {
				return nil, -1, 1
			}
			return map[string][]byte{"sq": []byte(fmt.Sprint(s.Input.Index))}, -1, 0
		},
	}
	g := foreachGraph(t)
	ex := &fakeExec{steps: steps}
	r, store := newRun(t, g, ex, Options{MaxWorkers: 1})
	if err := execute(t, r); err == nil {
		t.Fatal("first run should fail")
	}
	fail.Store(false)
	ex2 := &fakeExec{steps: steps}
	r2 := &Run{Graph: g, Store: store, Exec: ex2, Code: []byte("code"), Opts: Options{MaxWorkers: 1, MaxNumSplits: 100, Resume: true}}
	if err := execute(t, r2); err != nil {
		t.Fatal(err)
	}
	if r2.RunID() == r.RunID() {
		t.Fatal("resume must use a new run id")
	}
	if n := len(ex2.stepCalls("start")); n != 0 {
		t.Fatalf("start re-ran %d times; it should be cloned", n)
	}
	// work is the failed step: all its splits re-run, then join and end.
	if n := len(ex2.stepCalls("work")); n != 4 {
		t.Fatalf("work ran %d times, want 4", n)
	}
	ids, _ := store.ListTasks(bg, "F", r2.RunID(), "start")
	task, _ := store.GetTask(bg, "F", r2.RunID(), "start", ids[0])
	if task.ClonedFrom != r.RunID()+"/start/1" {
		t.Fatalf("cloned_from = %q", task.ClonedFrom)
	}
}

func TestCancelKillsRunningTasks(t *testing.T) {
	ex := &fakeExec{steps: map[string]stepFunc{"start": splits(5)}, block: "work"}
	r, store := newRun(t, foreachGraph(t), ex, Options{MaxWorkers: 3})
	if err := r.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Execute(ctx) }()
	// Wait for three splits to be running, then cancel.
	deadline := time.Now().Add(5 * time.Second)
	for len(ex.stepCalls("work")) < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-done
	if !IsInterrupted(err) {
		t.Fatalf("want interrupted, got %v", err)
	}
	run, _ := store.GetRun(bg, "F", r.RunID())
	if run.Status != datastore.StatusFailed {
		t.Fatalf("run status %s", run.Status)
	}
	if r.Killed() != 3 {
		t.Fatalf("killed %d tasks, want 3", r.Killed())
	}
	if n := len(ex.stepCalls("join")); n != 0 {
		t.Fatalf("join ran after cancel")
	}
}

func TestPrepareErrorsWriteNothing(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		par  []Param
		want string
		kind error // engine/errs kind (the gRPC code the client gets)
	}{
		{"zero workers", Options{MaxWorkers: -1}, nil, "--max-workers must be at least 1", errs.ErrInvalid},
		{"required param", Options{}, []Param{{Name: "alpha", Required: true}}, "parameter \"alpha\" is required", errs.ErrInvalid},
		{"reserved param", Options{}, []Param{{Name: "input", HasValue: true}}, "invalid parameter name", errs.ErrInvalid},
		{"resume nothing", Options{Resume: true}, nil, "nothing to resume", errs.ErrPrecondition},
		{"resume a run that does not exist", Options{Resume: true, OriginRunID: "7"}, nil, "cannot resume: run 7 of flow F does not exist", errs.ErrNotFound},
		{"unknown with", Options{With: []graph.Decorator{{Name: "bogus"}}}, nil, "unknown decorator \"bogus\"", errs.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, store := newRun(t, foreachGraph(t), &fakeExec{}, c.opts)
			r.Params = c.par
			err := r.Prepare(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) || errs.Kind(err) != c.kind {
				t.Fatalf("got %v (kind %v), want %q of kind %v", err, errs.Kind(err), c.want, c.kind)
			}
			if _, err := os.Stat(store.Root); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("datastore written on a bad input")
			}
		})
	}
}

// BenchmarkForeach200 measures the engine's own cost per task (scheduling,
// staging, hashing and metadata writes) with an executor that does no work.
func BenchmarkForeach200(b *testing.B) { benchForeach(b, 200) }

// A foreach's splits get task ids in the order of their index, as in
// Metaflow, however many run at once (ids were taken by whichever task's
// goroutine got going first).
func TestForeachSplitIDsFollowTheirIndex(t *testing.T) {
	for _, workers := range []int{1, 4, 16} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			ex := &fakeExec{steps: map[string]stepFunc{"start": splits(12)}}
			r, store := newRun(t, foreachGraph(t), ex, Options{MaxWorkers: workers})
			if err := execute(t, r); err != nil {
				t.Fatal(err)
			}
			ids, err := store.ListTasks(bg, "F", "1", "work")
			if err != nil || len(ids) != 12 {
				t.Fatalf("work tasks %v (%v), want 12", ids, err)
			}
			for i, id := range ids { // numeric order
				task, err := store.GetTask(bg, "F", "1", "work", id)
				if err != nil {
					t.Fatal(err)
				}
				if got := task.Stack[len(task.Stack)-1].Index; got != i {
					t.Fatalf("task %s (the %d-th id) has split index %d, want %d", id, i, got, i)
				}
			}
		})
	}
}
