//go:build linux

package batch

// The Batch executor end to end against the "live" moto_server: a flow whose
// start step has the batch decorator runs start as a Batch job (a docker
// container of the local base-R image running `metaflow-engine task-runner`,
// which reaches moto's S3 on 127.0.0.1) and end as a local Rscript.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
	"github.com/metaflow-r/metaflow/shim"
)

// ensureImage builds the test image when it is absent (~70 s, once).
func ensureImage(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed; skipping the Batch executor test")
	}
	if exec.Command("docker", "image", "inspect", testImage).Run() == nil {
		return
	}
	t.Logf("building %s with tests/batch/build-image.sh (about 70 s, once)", testImage)
	out, err := exec.Command("bash", "../tests/batch/build-image.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", testImage, err, out)
	}
}

// createBucket makes an S3 bucket in the emulator.
func createBucket(t testing.TB, s *s3io.Client, bucket string) {
	t.Helper()
	if err := s.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
}

// codeBundle serializes step functions the way run() does.
func codeBundle(t testing.TB, functions string) []byte {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "code.rds")
	expr := `writeBin(serialize(list(functions = list(` + functions + `), globals = list(), packages = character()), NULL), "` + path + `")`
	script := filepath.Join(dir, "code.R")
	if err := os.WriteFile(script, []byte(expr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("Rscript", script).CombinedOutput(); err != nil {
		t.Fatalf("make code bundle: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testExecutor is a Batch executor on the live emulator, with a fresh
// queue, a bucket and a static engine for the jobs.
func testExecutor(t *testing.T) (*fixture, *Executor, *shim.Local) {
	t.Helper()
	if _, err := exec.LookPath("Rscript"); err != nil {
		t.Skip("Rscript is not installed")
	}
	f := newFixture(t, true)
	ensureImage(t)
	// A static engine for the jobs (the build cache makes later builds a link).
	engine := filepath.Join(t.TempDir(), "metaflow-engine")
	cmd := exec.Command("go", "build", "-o", engine, "./cmd/metaflow-engine")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the engine: %v\n%s", err, out)
	}
	t.Cleanup(func() { waitJobsGone(t) })
	bucket := strings.ToLower(f.name("mf-exec"))
	exe, err := NewExecutor(f.ctx, Config{
		Queue: f.queue, Image: testImage, S3Root: "s3://" + bucket + "/metaflow", EngineBinary: engine,
		PollInterval: 200 * time.Millisecond, LogInterval: 500 * time.Millisecond,
		// What METAFLOW_BATCH_JOB_ENV carries under moto: the emulator's
		// endpoint and dummy credentials different from the submitter's.
		JobEnv: map[string]string{
			"AWS_ENDPOINT_URL": emu.live, "AWS_ACCESS_KEY_ID": "job", "AWS_SECRET_ACCESS_KEY": "job-secret",
			"AWS_REGION": "us-east-1",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	createBucket(t, exe.s3, bucket)
	local, err := shim.NewLocal()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	return f, exe, local
}

func TestEmuExecutorRunsStepOnBatch(t *testing.T) {
	f, exe, local := testExecutor(t)
	g, err := graph.New("ExecFlowR", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "xs",
			Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"cpu": "1", "memory": "512"}}}},
		{Name: "work", Next: []string{"join"}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	code := codeBundle(t, `
		start = function(self) { self$xs <- c(2, 3); self$where <- Sys.getenv("AWS_BATCH_JOB_ID"); cat("hello from the container\n") },
		work = function(self) { self$sq <- self$input^2 },
		join = function(self, inputs) { self$total <- sum(sapply(inputs, function(i) i$sq)); self$where <- inputs[[1]]$where },
		end = function(self) { cat("total is:", self$total, "job", nzchar(self$where), "\n") }`)
	root := t.TempDir()
	var mu sync.Mutex
	var lines []string
	r := &scheduler.Run{
		Graph: g, Store: datastore.NewLocal(filepath.Join(root, ".metaflow")), Exec: local, Executors: executors(t, exe), Code: code,
		Opts: scheduler.Options{MaxWorkers: 4, MaxNumSplits: 10, User: "tester", Workdir: root, Rscript: "Rscript"},
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
	for _, want := range []string{"/start/1 (pid 0)] Batch job ", "is RUNNING.", "is SUCCEEDED.", "hello from the container", "total is: 13 job TRUE"} {
		if !strings.Contains(all, want) {
			t.Errorf("console lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "/work/2 (pid 0)") {
		t.Errorf("work ran on Batch:\n%s", all)
	}
	// The datastore holds start's artifacts and its log, as for a local task.
	st := datastore.NewLocal(filepath.Join(root, ".metaflow"))
	arts, err := st.GetArtifacts(f.ctx, "ExecFlowR", r.RunID(), "start", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"xs", "where"} {
		if _, ok := arts[n]; !ok {
			t.Errorf("start has no artifact %s: %v", n, arts)
		}
	}
	logb, _ := os.ReadFile(st.LogFile("ExecFlowR", r.RunID(), "start", "1", 0, "stdout"))
	if !bytes.Contains(logb, []byte("hello from the container")) {
		t.Errorf("start's stdout log: %q", logb)
	}
	// A failing step: its error message comes back from the container.
	g2, _ := graph.New("FailFlowR", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "end"},
	})
	r2 := &scheduler.Run{
		Graph: g2, Store: datastore.NewLocal(filepath.Join(root, ".metaflow")), Exec: local, Executors: executors(t, exe),
		Code: codeBundle(t, `start = function(self) stop("boom in the container"), end = function(self) NULL`),
		Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 1, User: "tester", Workdir: root, Rscript: "Rscript"},
		Emit: func(ev scheduler.Event) { mu.Lock(); lines = append(lines, ev.Line); mu.Unlock() },
	}
	if err := r2.Prepare(f.ctx); err != nil {
		t.Fatal(err)
	}
	err = r2.Execute(f.ctx)
	if err == nil || !strings.Contains(err.Error(), "boom in the container") {
		t.Errorf("failing step: %v", err)
	}
}

// A running Batch task's output reaches the local log files (what `logs
// RUN/STEP` reads) and the console while the job runs, and every line is
// printed exactly once, also the ones that arrive with the final upload.
func TestEmuExecutorLiveLogs(t *testing.T) {
	f, exe, local := testExecutor(t)
	g, _ := graph.New("LiveLogFlowR", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "end"},
	})
	root := t.TempDir()
	store := datastore.NewLocal(filepath.Join(root, ".metaflow"))
	var (
		mu       sync.Mutex
		lines    []string
		logWhile []byte // start's stdout log when its first line reached the console
		runID    string
	)
	r := &scheduler.Run{
		Graph: g, Store: store, Exec: local, Executors: executors(t, exe),
		Code: codeBundle(t, `start = function(self) { cat("first line\n"); message("first warning"); Sys.sleep(5); `+
			`cat("second line\n"); cat("no newline") }, end = function(self) NULL`),
		Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 1, User: "tester", Workdir: root, Rscript: "Rscript"},
		Emit: func(ev scheduler.Event) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, ev.Line)
			if strings.HasSuffix(ev.Line, "] first line") {
				logWhile, _ = os.ReadFile(store.LogFile("LiveLogFlowR", runID, "start", "1", 0, "stdout"))
			}
		},
	}
	if err := r.Prepare(f.ctx); err != nil {
		t.Fatal(err)
	}
	runID = r.RunID()
	t0 := time.Now()
	err := r.Execute(f.ctx)
	elapsed := time.Since(t0)
	all := strings.Join(lines, "\n")
	if err != nil {
		t.Fatalf("run failed: %v\n%s", err, all)
	}
	t.Logf("console (%s):\n%s", elapsed.Round(time.Millisecond), all)
	at := func(suffix string) int {
		n, i := 0, -1
		for j, l := range lines {
			if strings.Contains(l, "/start/1 (pid 0)] ") && strings.HasSuffix(l, suffix) {
				n, i = n+1, j
			}
		}
		if n != 1 {
			t.Errorf("%d console lines end with %q, want 1:\n%s", n, suffix, all)
		}
		return i
	}
	first, warn, second, last, done := at("] first line"), at("] first warning"), at("] second line"), at("] no newline"), at(" is SUCCEEDED.")
	// The first lines came while the job ran, the rest at the end, in order.
	if !(first < done && warn < done && first < second && second < last) {
		t.Errorf("order of lines: first %d, warning %d, second %d, last %d, SUCCEEDED %d:\n%s", first, warn, second, last, done, all)
	}
	if string(logWhile) != "first line\n" {
		t.Errorf("start's stdout log when its first line was printed: %q, want %q", logWhile, "first line\n")
	}
	for stream, want := range map[string]string{"stdout": "first line\nsecond line\nno newline", "stderr": "first warning\n"} {
		b, _ := os.ReadFile(store.LogFile("LiveLogFlowR", runID, "start", "1", 0, stream))
		if !strings.Contains(string(b), want) {
			t.Errorf("start's %s log after the run: %q, want it to contain %q", stream, b, want)
		}
	}
	// Cost: at most one GET per stream per interval while the job runs, plus
	// the final two.
	if n, max := exe.logGets.Load(), 2*int64(elapsed/exe.cfg.LogInterval)+2; n > max || n < 4 {
		t.Errorf("%d GETs of logs in %s (interval %s), want 4..%d", n, elapsed, exe.cfg.LogInterval, max)
	} else {
		t.Logf("%d GETs of logs in %s (interval %s)", n, elapsed.Round(time.Millisecond), exe.cfg.LogInterval)
	}
}

// Cancelling a run (Ctrl-C) terminates its Batch jobs.
func TestEmuExecutorCancelTerminatesJob(t *testing.T) {
	f, exe, local := testExecutor(t)
	g, _ := graph.New("SleepFlowR", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "end"},
	})
	root := t.TempDir()
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	ids := make(chan string, 1)
	r := &scheduler.Run{
		Graph: g, Store: datastore.NewLocal(filepath.Join(root, ".metaflow")), Exec: local, Executors: executors(t, exe),
		Code: codeBundle(t, `start = function(self) Sys.sleep(120), end = function(self) NULL`),
		Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 1, User: "tester", Workdir: root, Rscript: "Rscript"},
		Emit: func(ev scheduler.Event) {
			if i := strings.Index(ev.Line, "] Batch job "); i >= 0 && strings.HasSuffix(ev.Line, " is RUNNING.") {
				ids <- strings.Fields(ev.Line[i+len("] Batch job "):])[0]
				cancel()
			}
		},
	}
	if err := r.Prepare(f.ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err := r.Execute(ctx)
	if !scheduler.IsInterrupted(err) {
		t.Fatalf("run: %v, want interrupted", err)
	}
	if d := time.Since(t0); d > 60*time.Second {
		t.Errorf("cancel took %s", d)
	}
	id := <-ids
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := exe.Client().Describe(f.ctx, []string{id})
		if err != nil {
			t.Fatal(err)
		}
		if st[id].Status == StateFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s 20 s after the run was cancelled", id, st[id].Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitJobsGone waits until moto has removed the containers of this file's
// Batch jobs (named mf-<flow>-...), so stopping moto leaves none behind.
func waitJobsGone(t *testing.T) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		for _, flow := range []string{"ExecFlowR", "FailFlowR", "SleepFlowR", "LiveLogFlowR", "PackageFlowR", "ArrayFlowR", "ArrayStopFlowR"} {
			out, _ := exec.Command("docker", "ps", "-aq", "--filter", "name=^mf-"+flow+"-").Output()
			left += len(strings.Fields(string(out)))
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d Batch job containers still exist 30 s after the test", left)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A step no compute environment of its queue can ever run fails the run in
// Prepare: no run is recorded and nothing is submitted.
func TestEmuPreflightRefusesBeforeTheRun(t *testing.T) {
	f := newFixture(t, false)
	small := f.newQueue(f.managedCE(4, "m5.large"), types.JQStateEnabled)
	exe, err := NewExecutor(f.ctx, Config{Queue: f.queue, Image: noImage, S3Root: "s3://unused/metaflow"})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		deco map[string]string
		want string // "" : Prepare succeeds
	}{
		{"fits", map[string]string{"queue": small, "cpu": "2"}, ""},
		{"too many vCPUs", map[string]string{"queue": small, "cpu": "8"}, "step work cannot run on AWS Batch: job queue " + small + " cannot run a job of 8 vCPU"},
		{"no such queue", map[string]string{"queue": "nope"}, "step work cannot run on AWS Batch: job queue \"nope\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := graph.New("PreflightFlowR", []graph.Step{
				{Name: "start", Next: []string{"work"}},
				{Name: "work", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch", Args: tc.deco}}},
				{Name: "end"},
			})
			if err != nil {
				t.Fatal(err)
			}
			store := datastore.NewLocal(filepath.Join(root, tc.name, ".metaflow"))
			exe.c.ResetCalls()
			r := &scheduler.Run{Graph: g, Store: store, Executors: executors(t, exe), Code: []byte("code"),
				Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 1, User: "tester"}}
			err = r.Prepare(f.ctx)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare = %v, want an error containing %q", err, tc.want)
			}
			if ids, _ := store.ListRuns(f.ctx, "PreflightFlowR"); len(ids) != 0 {
				t.Errorf("runs recorded: %v", ids)
			}
			if n := exe.c.Calls()["Batch.DescribeJobQueues"]; n != 1 {
				t.Errorf("the queue was described %d times, want once", n)
			}
		})
	}
}
