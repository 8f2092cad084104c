package scheduler

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// A third executor (a Kubernetes job, say) needs no change to the scheduler:
// its package registers its decorator with the graph and its plugin in a
// registry. These fakes are such executors.
const (
	fakeCloud = "fakecloud" // as an executor package would name its decorator
	fakeOther = "fakeother" // a second one, to choose between
)

func init() {
	graph.RegisterDecorator(graph.DecoratorSpec{Name: fakeCloud, Executor: true,
		Args: map[string]graph.ArgKind{"cpu": graph.ArgPosInt, "queue": graph.ArgText}})
	graph.RegisterDecorator(graph.DecoratorSpec{Name: fakeOther, Executor: true})
}

// fakePlugin makes its executor (or fails to, fails times first) and counts
// how often it was asked.
type fakePlugin struct {
	exec  Executor
	fails int
	mu    sync.Mutex
	made  int
}

func (p *fakePlugin) Name() string { return "Fake Cloud" }

func (p *fakePlugin) NewExecutor() (Executor, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.made++
	if p.made <= p.fails {
		return nil, errors.New("Fake Cloud is not configured: set FAKE_QUEUE")
	}
	return p.exec, nil
}

func registry(t *testing.T, plugins map[string]Plugin) *Registry {
	t.Helper()
	reg := NewRegistry()
	for deco, p := range plugins {
		if err := reg.Register(deco, p); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// decoExec records the decorators handed to it, by step.
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

// Steps with an executor's decorator go to that executor (with their merged
// decorators), the others stay local; --with the decorator sends every step.
func TestDecoratedStepsGoToTheirExecutor(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{
			{Name: fakeCloud, Args: map[string]string{"cpu": "2"}}, {Name: "resources", Args: map[string]string{"memory": "9000"}}}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	local := &fakeExec{}
	remote := &decoExec{fakeExec: &fakeExec{}}
	r, _ := newRun(t, g, local, Options{})
	r.Executors = registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", remote)})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if len(remote.stepCalls("start")) != 1 || len(local.stepCalls("start")) != 0 {
		t.Errorf("start: %d remote, %d local runs", len(remote.stepCalls("start")), len(local.stepCalls("start")))
	}
	if len(remote.stepCalls("end")) != 0 || len(local.stepCalls("end")) != 1 {
		t.Errorf("end: %d remote, %d local runs", len(remote.stepCalls("end")), len(local.stepCalls("end")))
	}
	if d := remote.decos["start"]; d[fakeCloud].Args["cpu"] != "2" || d["resources"].Args["memory"] != "9000" {
		t.Errorf("decorators handed to the executor: %v", d)
	}

	local, remote = &fakeExec{}, &decoExec{fakeExec: &fakeExec{}}
	r, _ = newRun(t, foreachGraph(t), local, Options{With: []graph.Decorator{{Name: fakeCloud}}})
	local.steps = map[string]stepFunc{"start": splits(3)}
	remote.steps = local.steps
	r.Executors = registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", remote)})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if len(local.calls) != 0 || len(remote.calls) != 6 {
		t.Errorf("--with %s: %d local, %d remote runs, want 0 and 6", fakeCloud, len(local.calls), len(remote.calls))
	}
}

// A step's own executor decorator wins over --with's; two in --with are
// refused before anything is written.
func TestStepsOwnExecutorWinsOverWith(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: fakeCloud}}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cloud, other := &fakeExec{}, &fakeExec{}
	reg := registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", cloud), fakeOther: Ready("Fake Other", other)})
	r, _ := newRun(t, g, &fakeExec{}, Options{With: []graph.Decorator{{Name: fakeOther}}})
	r.Executors = reg
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if len(cloud.stepCalls("start")) != 1 || len(other.stepCalls("end")) != 1 || len(cloud.calls)+len(other.calls) != 2 {
		t.Errorf("start on %d/%d, end on %d/%d (cloud/other)", len(cloud.stepCalls("start")), len(other.stepCalls("start")),
			len(cloud.stepCalls("end")), len(other.stepCalls("end")))
	}
	r, store := newRun(t, g, &fakeExec{}, Options{With: []graph.Decorator{{Name: fakeOther}, {Name: fakeCloud}}})
	r.Executors = reg
	err = r.Prepare(bg)
	want := `--with: decorators "fakeother" and "fakecloud" both choose where the steps run: keep one`
	if err == nil || err.Error() != want || !errors.Is(err, errs.ErrInvalid) {
		t.Errorf("two executors in --with: %v, want %q", err, want)
	}
	if runs, _ := store.ListRuns(bg, "F"); len(runs) != 0 {
		t.Errorf("runs written: %v", runs)
	}
}

// The executor is made when a run first needs it, once; a failure (its
// settings missing) fails that run before anything is written, with the
// plugin's message, and the next run tries again.
func TestExecutorsAreMadeOnFirstUse(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: fakeCloud}}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePlugin{exec: &fakeExec{}, fails: 1}
	reg := registry(t, map[string]Plugin{fakeCloud: p})
	for _, tc := range []struct {
		name    string
		g       *graph.Graph
		reg     *Registry
		wantErr string
		made    int
	}{
		{"a run without the decorator does not make it", plain, reg, "", 0},
		{"not configured", g, reg, "Fake Cloud is not configured: set FAKE_QUEUE", 1},
		{"configured since", g, reg, "", 2},
		{"made once", g, reg, "", 2},
		{"no such executor in this engine", g, nil, `decorator "fakecloud" chooses an executor that this engine does not have`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, store := newRun(t, tc.g, &fakeExec{}, Options{})
			r.Executors = tc.reg
			err := execute(t, r)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errs.ErrPrecondition) {
					t.Fatalf("run = %v, want the precondition %q", err, tc.wantErr)
				}
				if runs, _ := store.ListRuns(bg, "F"); len(runs) != 0 {
					t.Errorf("runs written: %v", runs)
				}
			}
			if p.made != tc.made {
				t.Errorf("NewExecutor called %d times, want %d", p.made, tc.made)
			}
		})
	}
	if err := reg.Register("retry", p); err == nil {
		t.Error("registered an executor under a decorator that does not choose one")
	}
	if err := reg.Register(fakeCloud, p); err == nil {
		t.Error("registered an executor twice")
	}
}

// storedExec is an executor whose tasks leave their outputs in the
// datastore's blobs (as remote jobs do) and only name them.
type storedExec struct {
	sha string // the blob named as output x ("" : put one in the store)
}

func (e *storedExec) Run(ctx context.Context, l *Launch) (int, error) {
	l.Started(0)
	sha := e.sha
	if sha == "" {
		a, err := l.Blobs.Put(ctx, l.Spec.Flow, strings.NewReader("made remotely by "+l.Spec.Step))
		if err != nil {
			return -1, err
		}
		sha = a.SHA
	}
	l.Stored(map[string]string{"x": sha})
	res, _ := msgpack.Marshal(map[string]any{"artifacts": []string{"x"}, "merged": []any{}, "foreach_count": -1})
	return 0, os.WriteFile(filepath.Join(l.Spec.OutputDir, "_result.mpk"), res, 0o644)
}

func TestOutputsLeftInTheStoreAreAdopted(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sha, wantErr string
	}{
		{"in the store", "", ""},
		{"missing from the store", strings.Repeat("ab", 32), "store artifact x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, local := newRun(t, g, nil, Options{})
			store := &readsStore{Local: local, reads: map[string]int{}}
			r.Store = store
			r.Exec = &storedExec{sha: tc.sha}
			err := execute(t, r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			arts, err := store.GetArtifacts(bg, "F", r.RunID(), "end", "2")
			if err != nil {
				t.Fatal(err)
			}
			// Adopted by sha: the scheduler neither read nor stored it.
			if n := store.count(arts["x"].SHA); n != 0 {
				t.Errorf("end's x was read or stored %d times by the engine, want 0", n)
			}
			b, err := readBlob(store, "F", arts["x"].SHA)
			if err != nil || string(b) != "made remotely by end" || arts["x"].Size != int64(len(b)) {
				t.Fatalf("end's x = %q, %v", b, err)
			}
		})
	}
}

// readsStore is a local store that counts, by sha, the blobs read
// (Open, LocalFile) or stored from staged files (PutFile).
type readsStore struct {
	*datastore.Local
	mu    sync.Mutex
	reads map[string]int
}

func (s *readsStore) note(sha string) {
	s.mu.Lock()
	s.reads[sha]++
	s.mu.Unlock()
}

func (s *readsStore) count(sha string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[sha]
}

func (s *readsStore) Open(ctx context.Context, flow, sha string) (io.ReadCloser, error) {
	s.note(sha)
	return s.Local.Open(ctx, flow, sha)
}

func (s *readsStore) LocalFile(ctx context.Context, flow, sha string) (datastore.BlobFile, error) {
	s.note(sha)
	return s.Local.LocalFile(ctx, flow, sha)
}

func (s *readsStore) PutFile(ctx context.Context, flow, path string) (datastore.Artifact, error) {
	a, err := s.Local.PutFile(ctx, flow, path)
	s.note(a.SHA)
	return a, err
}

// refusingExec runs tasks like fakeExec but refuses steps in Preflight.
type refusingExec struct {
	*fakeExec
	refuse map[string]error
	asked  []string
}

func (b *refusingExec) Preflight(ctx context.Context, step string, decos map[string]graph.Decorator, rscript string) error {
	b.asked = append(b.asked, step)
	return b.refuse[step]
}

func TestPreflightChecksOnlyStepsThatWillRun(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: fakeCloud}}},
		{Name: "end", Decorators: []graph.Decorator{{Name: fakeCloud}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &refusingExec{fakeExec: &fakeExec{}}
	reg := registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", b)})
	r, store := newRun(t, g, nil, Options{})
	r.Executors = reg
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.asked, ","); got != "start,end" {
		t.Errorf("a run checked %q, want start,end", got)
	}
	// start's queue is gone since: resuming from end clones start, so it
	// is not checked; resuming from start is refused before anything.
	b.refuse = map[string]error{"start": CannotRun(errors.New("job queue gone: not found"))}
	for _, tc := range []struct {
		from, wantErr, asked string
		kind                 error
	}{
		{"end", "", "end", nil},
		{"start", "step start cannot run on Fake Cloud: job queue gone: not found", "start", errs.ErrPrecondition},
	} {
		b.asked = nil
		r2 := &Run{Graph: g, Store: store, Executors: reg, Code: []byte("code"),
			Opts: Options{MaxWorkers: 1, MaxNumSplits: 10, Resume: true, ResumeStep: tc.from, OriginRunID: r.RunID()}}
		err := r2.Prepare(bg)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr || !errors.Is(err, tc.kind)) {
			t.Errorf("resume %s: Prepare = %v, want %q", tc.from, err, tc.wantErr)
		}
		if got := strings.Join(b.asked, ","); got != tc.asked {
			t.Errorf("resume %s checked %q, want %q", tc.from, got, tc.asked)
		}
	}
	// A check that could not be made is not a refusal.
	b.refuse = map[string]error{"end": errors.New("DescribeJobQueues: connection refused")}
	r3 := &Run{Graph: g, Store: store, Executors: reg, Code: []byte("code"), Opts: Options{MaxWorkers: 1, MaxNumSplits: 10}}
	if err := r3.Prepare(bg); err == nil || !strings.HasPrefix(err.Error(), "could not check Fake Cloud for step end:") || !errors.Is(err, errs.ErrUnavailable) {
		t.Errorf("Prepare with a failing check = %v", err)
	}
}

// remoteExec is a Remote executor: it records the inputs and the datastore
// it was given, and writes to its log file while it runs.
type remoteExec struct {
	*fakeExec
	inputs []SpecArtifact
	blobs  []datastore.Blobs
	where  []string
}

func (e *remoteExec) RunsRemotely() {}

func (e *remoteExec) Run(ctx context.Context, l *Launch) (int, error) {
	e.mu.Lock()
	for _, in := range l.Spec.Inputs {
		for _, a := range in.Artifacts {
			e.inputs = append(e.inputs, a)
		}
	}
	e.blobs = append(e.blobs, l.Blobs)
	e.where = append(e.where, l.Datastore)
	e.mu.Unlock()
	return logRun(ctx, l, e.fakeExec)
}

// logExec is the same executor without the capability.
type logExec struct{ *fakeExec }

func (e logExec) Run(ctx context.Context, l *Launch) (int, error) { return logRun(ctx, l, e.fakeExec) }

// logRun writes to the attempt's log file for a while (so that a store that
// takes logs while they grow gets some), then runs the fake step.
func logRun(ctx context.Context, l *Launch, f *fakeExec) (int, error) {
	if err := os.MkdirAll(filepath.Dir(l.StdoutPath), 0o755); err != nil {
		return -1, err
	}
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(l.StdoutPath, []byte(strings.Repeat("line\n", i+1)), 0o644); err != nil {
			return -1, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f.Run(ctx, l)
}

// countingStore is a local store that says it is in S3 (so the scheduler
// treats it as remote) and counts blob fetches and log saves.
type countingStore struct {
	*datastore.Local
	mu      sync.Mutex
	fetched int
	saves   map[string]int // step -> SaveLogs calls
}

func (s *countingStore) Location() string { return "s3://bucket/prefix" }

func (s *countingStore) LocalFile(ctx context.Context, flow, sha string) (datastore.BlobFile, error) {
	s.mu.Lock()
	s.fetched++
	s.mu.Unlock()
	return s.Local.LocalFile(ctx, flow, sha)
}

func (s *countingStore) SaveLogs(ctx context.Context, flow, runID, step, taskID string, attempt int) error {
	s.mu.Lock()
	s.saves[step]++
	s.mu.Unlock()
	return s.Local.SaveLogs(ctx, flow, runID, step, taskID, attempt)
}

// A Remote executor gets its inputs by sha, without fetches from the
// datastore, and the datastore's blobs to ship them from; the scheduler
// leaves its running tasks' logs to it. Other executors' inputs are fetched
// and their logs stored while they grow.
func TestRemoteExecutorsShipInputsAndLogsThemselves(t *testing.T) {
	old := logSaveInterval
	logSaveInterval = 5 * time.Millisecond
	defer func() { logSaveInterval = old }()
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"mid"}},
		{Name: "mid", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: fakeCloud}}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]stepFunc{"start": func(*TaskSpec) (map[string][]byte, int, int) {
		return map[string][]byte{"a": []byte("A"), "b": []byte("B")}, -1, 0
	}}
	store := &countingStore{Local: datastore.NewLocal(filepath.Join(t.TempDir(), ".metaflow")), saves: map[string]int{}}
	local := logExec{&fakeExec{steps: steps}}
	remote := &remoteExec{fakeExec: &fakeExec{steps: steps}}
	r := &Run{Graph: g, Store: store, Exec: local, Code: []byte("code"), Opts: Options{MaxWorkers: 1, MaxNumSplits: 10},
		Executors: registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", remote)})}
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	// end inherits start's two artifacts through mid: two fetches, mid none.
	if store.fetched != 2 {
		t.Errorf("%d blob fetches, want 2 (end's inputs only)", store.fetched)
	}
	want := map[string]bool{shaOf([]byte("A")): true, shaOf([]byte("B")): true}
	for _, a := range remote.inputs {
		if !want[a.SHA] || a.Path != "" {
			t.Errorf("remote input %+v: want one of start's blobs, by sha only", a)
		}
		if b, err := readBlob(remote.blobs[0], "F", a.SHA); err != nil || shaOf(b) != a.SHA {
			t.Errorf("remote input %s from the launch's blobs: %q, %v", a.SHA, b, err)
		}
	}
	if len(remote.inputs) != 2 || strings.Join(remote.where, ",") != "s3://bucket/prefix" || remote.blobs[0] != datastore.Blobs(store) {
		t.Errorf("remote executor got inputs %v, datastore %v and blobs %v", remote.inputs, remote.where, remote.blobs)
	}
	if store.saves["mid"] != 1 {
		t.Errorf("the remote task's logs were saved %d times, want once (when it ended)", store.saves["mid"])
	}
	if store.saves["start"] < 2 || store.saves["end"] < 2 {
		t.Errorf("local tasks' logs saved %d and %d times, want more than once (while they grow)", store.saves["start"], store.saves["end"])
	}
}
