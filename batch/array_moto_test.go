//go:build linux

package batch

// Foreach splits on Batch as array jobs, against the live moto_server: moto
// runs each array child as a container of the local base-R image.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/shim"
)

// A 3-way foreach on Batch is one SubmitJob (an array of 3 children) plus
// one for the retry of the split that fails once; each child's artifacts,
// logs and attempts are its own.
func TestEmuArrayFanOut(t *testing.T) {
	f, exe, local := testExecutor(t)
	g, err := graph.New("ArrayFlowR", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "xs"},
		{Name: "work", Next: []string{"join"}, Decorators: []graph.Decorator{
			{Name: "batch", Args: map[string]string{"memory": "512"}}, {Name: "retry", Args: map[string]string{"times": "1"}}}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	code := codeBundle(t, `
		start = function(self) self$xs <- c(1, 2, 3),
		work = function(self) {
			cat("child", self$input, Sys.getenv("AWS_BATCH_JOB_ID"), "\n")
			if (self$input == 2 && current("retry_count") == 0) stop("split two fails once")
			self$sq <- self$input^2
		},
		join = function(self, inputs) self$total <- sum(sapply(inputs, function(i) i$sq)),
		end = function(self) cat("total is:", self$total, "\n")`)
	root := t.TempDir()
	store := datastore.NewLocal(filepath.Join(root, ".metaflow"))
	var mu sync.Mutex
	var lines []string
	r := &scheduler.Run{
		Graph: g, Store: store, Exec: local, Executors: executors(t, exe), Code: code,
		Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 10, User: "tester", Workdir: root, Rscript: "Rscript"},
		Emit: func(ev scheduler.Event) { mu.Lock(); lines = append(lines, ev.Line); mu.Unlock() },
	}
	if err := r.Prepare(f.ctx); err != nil {
		t.Fatal(err)
	}
	err = r.Execute(f.ctx)
	all := strings.Join(lines, "\n")
	if err != nil {
		t.Fatalf("run failed: %v\n%s", err, all)
	}
	t.Logf("console:\n%s", all)
	if !strings.Contains(all, "total is: 14") {
		t.Errorf("console lacks the total:\n%s", all)
	}
	// What moto holds: submissions are the jobs that are not array
	// children (moto lists children by queue too; AWS does not).
	out, err := f.raw.ListJobs(f.ctx, &batch.ListJobsInput{JobQueue: aws.String(f.queue),
		Filters: []types.KeyValuesPair{{Name: aws.String("JOB_NAME"), Values: []string{"mf-ArrayFlowR-*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var submitted []string
	for _, j := range out.JobSummaryList {
		if id := aws.ToString(j.JobId); !strings.Contains(id, ":") {
			submitted = append(submitted, id)
		}
	}
	if len(submitted) != 2 {
		t.Fatalf("%d jobs submitted (%v), want 2: one array of 3 and one retry", len(submitted), submitted)
	}
	ids, err := store.ListTasks(f.ctx, "ArrayFlowR", r.RunID(), "work")
	if err != nil || len(ids) != 3 {
		t.Fatalf("work tasks %v: %v", ids, err)
	}
	parents := map[string]bool{}
	var children []string
	for _, id := range ids {
		task, err := store.GetTask(f.ctx, "ArrayFlowR", r.RunID(), "work", id)
		if err != nil {
			t.Fatal(err)
		}
		i := task.Stack[0].Index
		want := 1
		if i == 1 {
			want = 2
		}
		if len(task.Attempts) != want || task.Status != datastore.StatusCompleted {
			t.Fatalf("split %d: %d attempts, %s; want %d, completed", i, len(task.Attempts), task.Status, want)
		}
		first := task.Attempts[0].JobID
		if !strings.Contains(first, ":") {
			t.Errorf("split %d's first attempt ran as job %q, not an array child", i, first)
		}
		parents[parentOf(first)] = true
		children = append(children, first)
		if want == 2 && strings.Contains(task.Attempts[1].JobID, ":") {
			t.Errorf("split %d's retry ran as %q, an array child; want a job of its own", i, task.Attempts[1].JobID)
		}
		arts, err := store.GetArtifacts(f.ctx, "ArrayFlowR", r.RunID(), "work", id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := arts["sq"]; !ok {
			t.Errorf("split %d has no artifact sq: %v", i, arts)
		}
		// Each child's log is its own: its element and its job id.
		last := task.Attempts[len(task.Attempts)-1]
		b, _ := os.ReadFile(store.LogFile("ArrayFlowR", r.RunID(), "work", id, last.Attempt, datastore.Stdout))
		if want := "child " + []string{"1", "2", "3"}[i] + " " + last.JobID; !strings.Contains(string(b), want) {
			t.Errorf("split %d's stdout log %q lacks %q", i, b, want)
		}
	}
	sort.Strings(children)
	if len(parents) != 1 || len(children) != 3 || children[0] == children[1] || children[1] == children[2] {
		t.Errorf("first attempts ran as %v, want 3 children of one array job", children)
	}
}

// Ctrl-C while the children run ends every child (and the parent), and the
// run counts each child it ended: moto leaves the children running when
// their parent is terminated, so each is terminated after the grace.
func TestEmuArrayCancelEndsChildren(t *testing.T) {
	f, exe, local := testExecutor(t)
	setCancelGrace(t, 500*time.Millisecond)
	g, _ := graph.New("ArrayStopFlowR", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "xs"},
		{Name: "work", Next: []string{"join"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	root := t.TempDir()
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	var mu sync.Mutex
	var ids []string
	r := &scheduler.Run{
		Graph: g, Store: datastore.NewLocal(filepath.Join(root, ".metaflow")), Exec: local, Executors: executors(t, exe),
		Code: codeBundle(t, `start = function(self) self$xs <- 1:3, work = function(self) Sys.sleep(120),
			join = function(self, inputs) NULL, end = function(self) NULL`),
		Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 3, User: "tester", Workdir: root, Rscript: "Rscript"},
		Emit: func(ev scheduler.Event) {
			mu.Lock()
			defer mu.Unlock()
			if i := strings.Index(ev.Line, "] Batch job "); i >= 0 && strings.HasSuffix(ev.Line, " is RUNNING.") {
				if ids = append(ids, strings.Fields(ev.Line[i+len("] Batch job "):])[0]); len(ids) == 3 {
					cancel()
				}
			}
		},
	}
	if err := r.Prepare(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Execute(ctx); !scheduler.IsInterrupted(err) {
		t.Fatalf("run: %v, want interrupted", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := r.Killed(); got != 3 {
		t.Errorf("Killed() = %d, want the 3 children", got)
	}
	if n := exe.Client().Calls()["Batch.TerminateJob"]; n != 4 {
		t.Errorf("%d TerminateJob calls, want 4: the parent, then each child moto left running", n)
	}
	parent := parentOf(ids[0])
	want := append([]string{parent}, ids...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := exe.Client().Describe(f.ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		ended := 0
		for _, id := range ids {
			if st[id].Status == StateFailed {
				ended++
			}
		}
		if ended == 3 && st[parent].StatusReason == "metaflow: the task was cancelled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the cancel: %d of 3 children FAILED, parent %s reason %q", ended, st[parent].Status, st[parent].StatusReason)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkEmuArrayFanOut runs a 1,000-split foreach on Batch against the
// frozen moto_server (jobs stay SUBMITTED, no container runs) through the
// real scheduler and executor, until every split is submitted and followed,
// then cancels it. Reported: SubmitJob calls per split, the engine's wall
// and CPU time per split from the foreach's end to the last child
// submitted, the poller's calls (DescribeJobs, ListJobs) per interval
// while all splits are in flight, the time the cancel took and its
// TerminateJob calls (moto leaves the children running when their parent
// is terminated: each is terminated after ArrayCancelGrace). Not a test: run with
//
//	go test ./batch/ -run '^$' -bench EmuArrayFanOut -benchtime 1x
func BenchmarkEmuArrayFanOut(b *testing.B) {
	const n = 1000
	if _, err := exec.LookPath("Rscript"); err != nil {
		b.Skip("Rscript is not installed")
	}
	if _, err := exec.LookPath("true"); err != nil { // frozen jobs never run it
		b.Skip("no `true` binary to stand in for the engine")
	}
	f := newFixture(b, false)
	local, err := shim.NewLocal()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { local.Close() })
	g, _ := graph.New("ArrayBenchFlowR", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "xs"},
		{Name: "work", Next: []string{"join"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	code := codeBundle(b, fmt.Sprintf(`start = function(self) self$xs <- seq_len(%d), work = function(self) NULL,
		join = function(self, inputs) NULL, end = function(self) NULL`, n))
	const poll = time.Second
	for _, mode := range []string{"array", "single"} {
		b.Run(mode, func(b *testing.B) { benchFanOut(b, f, local, g, code, n, poll, mode == "single") })
	}
}

// benchFanOut runs the benchmark's flow b.N times; single turns array
// jobs off (METAFLOW_BATCH_ARRAY_JOBS=0: a job per split, the baseline),
// with --max-workers 100: frozen jobs never end, so the first 100 splits
// are measured (a thousand concurrent tasks overwhelm moto_server).
func benchFanOut(b *testing.B, f *fixture, local *shim.Local, g *graph.Graph, code []byte, n int, poll time.Duration, single bool) {
	engine, _ := exec.LookPath("true")
	for i := 0; i < b.N; i++ {
		bucket := strings.ToLower(f.name("mf-bench"))
		exe, err := NewExecutor(f.ctx, Config{
			Queue: f.queue, Image: noImage, S3Root: "s3://" + bucket + "/metaflow", EngineBinary: engine,
			PollInterval: poll, LogInterval: time.Minute,
		})
		if err != nil {
			b.Fatal(err)
		}
		createBucket(b, exe.s3, bucket)
		root := b.TempDir()
		ctx, cancel := context.WithCancel(f.ctx)
		var (
			mu        sync.Mutex
			submitted int
			t0, t1    time.Time
			cpu0      time.Duration
			cpu1      time.Duration
			all       = make(chan struct{})
		)
		var ex scheduler.Executor = exe
		workers, want := 16, n
		if single {
			ex, workers, want = singleJobs{exe}, 100, 100
		}
		r := &scheduler.Run{
			Graph: g, Store: datastore.NewLocal(filepath.Join(root, ".metaflow")), Exec: local, Executors: executors(b, ex), Code: code,
			Opts: scheduler.Options{MaxWorkers: workers, MaxNumSplits: n, User: "bench", Workdir: root, Rscript: "Rscript"},
			Emit: func(ev scheduler.Event) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case strings.Contains(ev.Line, "/start/") && strings.HasSuffix(ev.Line, "Task finished successfully."):
					t0, cpu0 = time.Now(), processCPU()
					exe.c.ResetCalls()
				case strings.Contains(ev.Line, " submitted to queue "):
					if submitted++; submitted == want {
						t1, cpu1 = time.Now(), processCPU()
						close(all)
					}
				}
			},
		}
		if err := r.Prepare(f.ctx); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Execute(ctx) }()
		select {
		case <-all:
		case err := <-done:
			b.Fatalf("run ended before %d splits were submitted: %v", want, err)
		}
		calls := exe.c.Calls()
		// Polling while all are in flight: DescribeJobs per interval.
		exe.c.ResetCalls()
		time.Sleep(5 * poll)
		round := exe.c.Calls()
		polls := round["Batch.DescribeJobs"] + round["Batch.ListJobs"]
		exe.c.ResetCalls()
		tc := time.Now()
		cancel()
		if err := <-done; !scheduler.IsInterrupted(err) {
			b.Fatalf("run: %v, want interrupted", err)
		}
		took := time.Since(tc)
		terminates := exe.c.Calls()["Batch.TerminateJob"]
		if got := r.Killed(); got != want {
			b.Errorf("Killed() = %d, want %d", got, want)
		}
		b.ReportMetric(float64(calls["Batch.SubmitJob"])/float64(want), "submitjob/split")
		b.ReportMetric(float64(t1.Sub(t0).Microseconds())/1000/float64(want), "engine-ms/split")
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(want), "engine-cpu-ms/split")
		b.ReportMetric(float64(polls)/5, "poll-calls/interval")
		b.ReportMetric(took.Seconds(), "cancel-s")
		b.ReportMetric(float64(terminates), "terminatejob-calls")
		b.Logf("calls from the foreach's end to the last split submitted: %v; in %s of polling: %v", calls, 5*poll, round)
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// batch list shows an array job as one row (its parent, task "first..last")
// and batch kill terminates it with its children.
func TestEmuJobsListAndKillArrays(t *testing.T) {
	f := newFixture(t, false)
	const flow = "ArrayListFlowR"
	l := Labels{Flow: flow, User: "alice", Run: "15", Step: "work", Task: "2..4"}
	parent := f.submit(JobSpec{Labels: l, ArraySize: 3})
	single := f.submit(JobSpec{Labels: Labels{Flow: flow, User: "alice", Run: "15", Step: "work", Task: "3", Attempt: 1}})
	root := filepath.Join(t.TempDir(), ".metaflow")
	if err := os.MkdirAll(filepath.Join(root, flow, "15"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", f.queue)
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://metaflow-test/prefix")
	p := NewPlugin()
	for _, kill := range []bool{false, true} {
		rep, err := p.Jobs(f.ctx, inStore(root, scheduler.JobQuery{Flow: flow, User: "alice", Kill: kill}))
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, j := range rep.Jobs {
			rows = append(rows, j.ID+" "+j.TaskID)
		}
		sort.Strings(rows)
		want := []string{parent + " 2..4", single + " 3"}
		sort.Strings(want)
		if strings.Join(rows, ",") != strings.Join(want, ",") {
			t.Errorf("kill %v: rows %v, want %v", kill, rows, want)
		}
		if kill && rep.Killed != 2 {
			t.Errorf("killed %d, want 2 (the array job and the single job)", rep.Killed)
		}
	}
	ids := []string{parent, single, parent + ":0", parent + ":1", parent + ":2"}
	st, err := f.c.Describe(f.ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if st[id].StatusReason != terminateReason {
			t.Errorf("job %s was not terminated: %+v", id, st[id])
		}
	}
}
