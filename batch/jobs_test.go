package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// executors is a registry with exe as the batch decorator's executor.
func executors(t testing.TB, exe scheduler.Executor) *scheduler.Registry {
	t.Helper()
	reg := scheduler.NewRegistry()
	if err := reg.Register(Decorator, scheduler.Ready("AWS Batch", exe)); err != nil {
		t.Fatal(err)
	}
	return reg
}

// fakeJobs records what Jobs asks of Batch and answers List with jobs (or
// fail) by queue.
type fakeJobs struct {
	filters []ListFilter
	queues  []string
	killed  []string
	jobs    map[string][]Job
	fail    map[string]error
	logs    map[string][]string // CloudWatch lines by job id
}

func (f *fakeJobs) JobLog(ctx context.Context, id string, n int) ([]string, error) {
	lines, ok := f.logs[id]
	if !ok {
		return nil, ErrNoLogs
	}
	return lines, nil
}

func (f *fakeJobs) List(ctx context.Context, queue string, flt ListFilter) ([]Job, error) {
	f.filters = append(f.filters, flt)
	f.queues = append(f.queues, queue)
	return f.jobs[queue], f.fail[queue]
}

func (f *fakeJobs) Terminate(ctx context.Context, id, reason string) error {
	f.killed = append(f.killed, id)
	return nil
}

// fakePlugin is the plugin with fake as its Batch client and "q" as the
// configured queue.
func fakePlugin(fake *fakeJobs) *Plugin {
	return &Plugin{jobs: func(context.Context) (jobsAPI, string, error) { return fake, "q", nil }}
}

// inStore is q reading its runs from the local datastore at root, as the
// gRPC service passes a request's datastore ("" : none).
func inStore(root string, q scheduler.JobQuery) scheduler.JobQuery {
	if root != "" {
		q.Runs = func() (scheduler.RunReader, error) { return datastore.NewLocal(root), nil }
	}
	return q
}

// putRun records a run whose steps have the given decorators, as the
// scheduler does.
func putRun(t *testing.T, root, flow, id string, decos ...datastore.DecoratorMeta) {
	t.Helper()
	run := &datastore.Run{Flow: flow, RunID: id, Status: datastore.StatusRunning}
	for i, d := range decos {
		run.Graph = append(run.Graph, datastore.StepMeta{Name: fmt.Sprint("step", i), Decorators: []datastore.DecoratorMeta{d}})
	}
	if err := datastore.NewLocal(root).PutRun(context.Background(), run); err != nil {
		t.Fatal(err)
	}
}

func batchDeco(queue string) datastore.DecoratorMeta {
	return datastore.DecoratorMeta{Name: "batch", Args: map[string]string{"queue": queue, "cpu": "1"}}
}

// TestJobsQueues: which queues Jobs lists, for which selection.
func TestJobsQueues(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	// Run 1 names q1 and the default queue q; run 2 names q2 and q1 (twice)
	// and carries a queue argument on a decorator that is not batch; run 3,
	// the latest, has no metadata; the flow E has no runs.
	putRun(t, root, "F", "1", batchDeco("q1"), batchDeco("q"), batchDeco(""))
	putRun(t, root, "F", "2", batchDeco("q2"), batchDeco("q1"), batchDeco("q1"),
		datastore.DecoratorMeta{Name: "resources", Args: map[string]string{"queue": "bogus"}},
		datastore.DecoratorMeta{Name: "batch"})
	if err := os.MkdirAll(filepath.Join(root, "F", "3"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Flow W's run 1 was started with --with batch:queue=qw.
	withRun := &datastore.Run{Flow: "W", RunID: "1", Status: datastore.StatusRunning,
		Graph: []datastore.StepMeta{{Name: "start"}}, With: []datastore.DecoratorMeta{batchDeco("qw")}}
	if err := datastore.NewLocal(root).PutRun(context.Background(), withRun); err != nil {
		t.Fatal(err)
	}
	fake := &fakeJobs{}
	p := fakePlugin(fake)
	ctx := context.Background()
	for _, tc := range []struct {
		what   string
		root   string
		q      scheduler.JobQuery
		queues []string
	}{
		{"latest run, without metadata", root, scheduler.JobQuery{Flow: "F"}, []string{"q"}},
		{"--run-id 1", root, scheduler.JobQuery{Flow: "F", RunID: "1"}, []string{"q", "q1"}},
		{"--run-id 2", root, scheduler.JobQuery{Flow: "F", RunID: "2"}, []string{"q", "q2", "q1"}},
		{"--run-id 3, without metadata", root, scheduler.JobQuery{Flow: "F", RunID: "3"}, []string{"q"}},
		{"--run-id 7, not in the datastore", root, scheduler.JobQuery{Flow: "F", RunID: "7"}, []string{"q"}},
		{"--my-runs", root, scheduler.JobQuery{Flow: "F", AllRuns: true}, []string{"q", "q2", "q1"}},
		{"--with batch:queue=qw", root, scheduler.JobQuery{Flow: "W"}, []string{"q", "qw"}},
		{"--my-runs, no runs", root, scheduler.JobQuery{Flow: "E", AllRuns: true}, []string{"q"}},
		{"--my-runs, no datastore", "", scheduler.JobQuery{Flow: "F", AllRuns: true}, []string{"q"}},
	} {
		fake.queues = nil
		tc.q.User = "u"
		if _, err := p.Jobs(ctx, inStore(tc.root, tc.q)); err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		if fmt.Sprint(fake.queues) != fmt.Sprint(tc.queues) {
			t.Errorf("%s: listed queues %v, want %v", tc.what, fake.queues, tc.queues)
		}
	}

	// A job seen in two queues (a queue named by name and by ARN) is listed
	// and killed once; jobs of all queues come newest first.
	t0 := time.Now()
	job := func(id string, age time.Duration) Job {
		return Job{ID: id, Name: "mf-" + id, Status: StateRunning, CreatedAt: t0.Add(-age),
			Labels: Labels{Flow: "F", User: "u", Run: "2", Step: "s", Task: "1"}}
	}
	fake.jobs = map[string][]Job{
		"q":  {job("a", 1*time.Minute), job("c", 3*time.Minute)},
		"q2": {job("b", 2*time.Minute)},
		"q1": {job("a", 1*time.Minute)},
	}
	rep, err := p.Jobs(ctx, inStore(root, scheduler.JobQuery{Flow: "F", User: "u", RunID: "2", Kill: true}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range rep.Jobs {
		got = append(got, j.ID)
	}
	if fmt.Sprint(got) != "[a b c]" || fmt.Sprint(fake.killed) != "[a b c]" || rep.Killed != 3 || rep.Queue != "q" {
		t.Errorf("jobs in several queues: listed %v, killed %v (%d), queue %q; want [a b c] each once, queue q", got, fake.killed, rep.Killed, rep.Queue)
	}
	if j := rep.Jobs[1]; j.Name != "mf-b" || j.Status != "RUNNING" || j.RunID != "2" || j.Step != "s" || j.TaskID != "1" || j.User != "u" {
		t.Errorf("job b reported as %+v", j)
	}

	// A queue that cannot be listed: an error naming it and the run, and
	// nothing is terminated, not even the jobs of the queues listed.
	fake.killed = nil
	fake.fail = map[string]error{"q2": fmt.Errorf("list jobs of flow F in queue q2: Job queue q2 does not exist")}
	_, err = p.Jobs(ctx, inStore(root, scheduler.JobQuery{Flow: "F", User: "u", AllRuns: true, Kill: true}))
	if !errors.Is(err, errs.ErrUnavailable) || !strings.Contains(err.Error(), "queue q2 is named by batch(queue=) in run 2") {
		t.Errorf("failing queue: %v", err)
	}
	if len(fake.killed) != 0 {
		t.Errorf("failing queue: killed %v", fake.killed)
	}
}

func TestJobsQueries(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	ctx := context.Background()
	// Not configured: the executor's one-line error.
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "")
	_, err := NewPlugin().Jobs(ctx, inStore(root, scheduler.JobQuery{Flow: "F", User: "u", AllRuns: true}))
	if !errors.Is(err, errs.ErrPrecondition) || !strings.Contains(err.Error(), "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE") {
		t.Fatalf("not configured: %v", err)
	}
	fake := &fakeJobs{}
	p := fakePlugin(fake)
	for _, tc := range []struct {
		q    scheduler.JobQuery
		kind error
		msg  string
	}{
		{scheduler.JobQuery{User: "u"}, errs.ErrInvalid, "no flow"},
		{scheduler.JobQuery{Flow: "F"}, errs.ErrInvalid, "no user"},
		{scheduler.JobQuery{Flow: "F", User: "u", RunID: "3", AllRuns: true}, errs.ErrInvalid, "mutually exclusive"},
		{scheduler.JobQuery{Flow: "F", User: "u", RunID: "abc"}, errs.ErrInvalid, "must be a number"},
		{scheduler.JobQuery{Flow: "F", User: "u"}, errs.ErrNotFound, "no run of flow F found"},
	} {
		_, err := p.Jobs(ctx, inStore(root, tc.q))
		if errs.Kind(err) != tc.kind || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Jobs(%+v): %v, want %v %q", tc.q, err, tc.kind, tc.msg)
		}
	}
	if len(fake.filters) != 0 {
		t.Fatalf("Batch was asked although the query was refused: %v", fake.filters)
	}
	os.MkdirAll(filepath.Join(root, "F", "9"), 0o755)
	os.MkdirAll(filepath.Join(root, "F", "10"), 0o755)
	for _, q := range []scheduler.JobQuery{
		inStore(root, scheduler.JobQuery{Flow: "F", User: "u"}),
		inStore(root, scheduler.JobQuery{Flow: "F", User: "u", RunID: "9"}),
		inStore("", scheduler.JobQuery{Flow: "F", User: "v", AllRuns: true}),
	} {
		if _, err := p.Jobs(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	wantF := []ListFilter{{Flow: "F", User: "u", Run: "10"}, {Flow: "F", User: "u", Run: "9"}, {Flow: "F", User: "v"}}
	if fmt.Sprint(fake.filters) != fmt.Sprint(wantF) {
		t.Errorf("filters %v, want %v", fake.filters, wantF)
	}
	// The datastore's own error, as it is.
	bad := errs.Invalid("datastore_root must be an absolute path")
	q := scheduler.JobQuery{Flow: "F", User: "u", Runs: func() (scheduler.RunReader, error) { return nil, bad }}
	if _, err := p.Jobs(ctx, q); err != bad {
		t.Errorf("a datastore that does not open: %v", err)
	}
}

// TestJobsUnreadableRunIsAnError: a run whose metadata cannot be read
// (here: not JSON) could name queues; nothing is listed or killed.
func TestJobsUnreadableRunIsAnError(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	if err := os.MkdirAll(filepath.Join(root, "F", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "F", "1", "_run.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := &fakeJobs{}
	p := fakePlugin(fake)
	for _, q := range []scheduler.JobQuery{
		{Flow: "F", User: "u", RunID: "1", Kill: true},
		{Flow: "F", User: "u", AllRuns: true, Kill: true},
	} {
		_, err := p.Jobs(context.Background(), inStore(root, q))
		if !errors.Is(err, errs.ErrUnavailable) || !strings.Contains(err.Error(), "parse") {
			t.Errorf("%+v: error %v, want Unavailable naming the parse error", q, err)
		}
	}
	if len(fake.queues) != 0 || len(fake.killed) != 0 {
		t.Errorf("listed %v, killed %v; want nothing", fake.queues, fake.killed)
	}
}

// TestJobsLatestRunIsTheUsers: in a shared datastore the newest run may be
// somebody else's; "the latest run" is the newest run of the user.
func TestJobsLatestRunIsTheUsers(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	for _, r := range []*datastore.Run{
		{Flow: "F", RunID: "1", User: "u", Status: datastore.StatusRunning},
		{Flow: "F", RunID: "2", User: "v", Status: datastore.StatusRunning},
	} {
		if err := store.PutRun(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	fake := &fakeJobs{}
	p := fakePlugin(fake)
	for user, want := range map[string]string{"u": "1", "v": "2"} {
		fake.filters = nil
		if _, err := p.Jobs(context.Background(), inStore(root, scheduler.JobQuery{Flow: "F", User: user})); err != nil {
			t.Fatal(err)
		}
		if len(fake.filters) != 1 || fake.filters[0].Run != want {
			t.Errorf("user %s: listed %+v, want run %s", user, fake.filters, want)
		}
	}
	_, err := p.Jobs(context.Background(), inStore(root, scheduler.JobQuery{Flow: "F", User: "w"}))
	if !errors.Is(err, errs.ErrNotFound) || !strings.Contains(err.Error(), "no run of flow F by w") {
		t.Errorf("a user without runs: %v", err)
	}
}

// The plugin is the batch decorator's executor, made from the settings
// when a run first needs it: without queue or S3 root, the one-line error.
func TestPluginNewExecutor(t *testing.T) {
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "")
	p := NewPlugin()
	if p.Name() != "AWS Batch" {
		t.Errorf("name %q", p.Name())
	}
	e, err := p.NewExecutor()
	if e != nil || err == nil || !strings.HasPrefix(err.Error(), "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE") {
		t.Errorf("NewExecutor without settings = %v, %v", e, err)
	}
	reg := scheduler.NewRegistry()
	if err := reg.Register(Decorator, p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Executor(Decorator); !errors.Is(err, errs.ErrPrecondition) {
		t.Errorf("registry: %v, want a precondition", err)
	}
	var _ scheduler.LogSource = p
	var _ scheduler.JobManager = p
	var _ scheduler.Remote = &Executor{}
	var _ scheduler.Preflighter = &Executor{}
}
