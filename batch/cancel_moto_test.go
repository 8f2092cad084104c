//go:build linux

package batch

// Cancelling a run whose Batch API cannot be reached: a loopback proxy in
// front of the "frozen" moto_server (jobs stay SUBMITTED, no container)
// drops the TerminateJob calls it is told to, as an unreachable API does.
// The run reports exactly the jobs it ended and those it could not stop.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/shim"
)

// terminateProxy forwards every call to moto, except the TerminateJob
// calls refuse says no to: their connection is closed unanswered.
type terminateProxy struct {
	mu     sync.Mutex
	refuse func(jobID string, since time.Duration) bool
	armed  time.Time
	calls  map[string]int // TerminateJob calls per job, refused or not
}

func newTerminateProxy(t *testing.T, target string) (*terminateProxy, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &terminateProxy{calls: map[string]int{}}
	fwd := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/terminatejob" {
			body, _ := io.ReadAll(r.Body)
			var in struct {
				JobID string `json:"jobId"`
			}
			_ = json.Unmarshal(body, &in)
			p.mu.Lock()
			p.calls[in.JobID]++
			refused := p.refuse != nil && p.refuse(in.JobID, time.Since(p.armed))
			p.mu.Unlock()
			if refused {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *terminateProxy) arm(refuse func(jobID string, since time.Duration) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse, p.armed = refuse, time.Now()
}

func (p *terminateProxy) callsOf(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[id]
}

func TestEmuCancelReportsJobsItCouldNotStop(t *testing.T) {
	if emu.skip != "" {
		t.Skip(emu.skip)
	}
	if _, err := exec.LookPath("Rscript"); err != nil {
		t.Skip("Rscript is not installed")
	}
	engine, err := exec.LookPath("true") // any small ELF: frozen jobs never run it
	if err != nil || checkELF(engine) != nil {
		t.Skip("no `true` binary to stand in for the engine")
	}
	f := newFixture(t, false) // f.c talks to moto directly, not through the proxy
	setCancelGrace(t, 300*time.Millisecond)
	proxy, proxyURL := newTerminateProxy(t, emu.frozen)
	t.Setenv("AWS_ENDPOINT_URL", proxyURL) // the executor's calls go through it
	local, err := shim.NewLocal()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	g, err := graph.New("CancelFlowR", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "xs"},
		{Name: "work", Next: []string{"join"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	code := codeBundle(t, `start = function(self) self$xs <- 1:3, work = function(self) NULL,
		join = function(self, inputs) NULL, end = function(self) NULL`)

	cases := []struct {
		name   string
		window time.Duration
		refuse func(ids []string) func(string, time.Duration) bool
		// ended: which of the 3 jobs (in submission order) must end.
		ended []bool
		// retried: every refused job saw more than one TerminateJob.
		retried bool
	}{
		{"API unreachable: nothing stopped, every job listed", 1500 * time.Millisecond,
			func([]string) func(string, time.Duration) bool {
				return func(string, time.Duration) bool { return true }
			},
			[]bool{false, false, false}, true},
		{"one job refused: two ended, one listed", 1500 * time.Millisecond,
			func(ids []string) func(string, time.Duration) bool {
				return func(id string, _ time.Duration) bool { return id == ids[1] }
			},
			[]bool{true, false, true}, true},
		{"API back within the window: the retry ends every job", 20 * time.Second,
			func([]string) func(string, time.Duration) bool {
				return func(_ string, since time.Duration) bool { return since < 1200*time.Millisecond }
			},
			[]bool{true, true, true}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy.arm(nil)
			bucket := strings.ToLower(f.name("mf-cancel"))
			exe, err := NewExecutor(f.ctx, Config{
				Queue: f.queue, Image: noImage, S3Root: "s3://" + bucket + "/metaflow", EngineBinary: engine,
				PollInterval: 200 * time.Millisecond, LogInterval: 500 * time.Millisecond, TerminateTimeout: tc.window,
			})
			if err != nil {
				t.Fatal(err)
			}
			createBucket(t, exe.s3, bucket)
			root := t.TempDir()
			store := datastore.NewLocal(filepath.Join(root, ".metaflow"))
			ctx, cancel := context.WithCancel(f.ctx)
			defer cancel()
			var (
				mu   sync.Mutex
				ids  []string
				text []string
			)
			r := &scheduler.Run{
				Graph: g, Store: store, Exec: local, Executors: executors(t, exe), Code: code,
				Opts: scheduler.Options{MaxWorkers: 4, MaxNumSplits: 3, User: "tester", Workdir: root, Rscript: "Rscript"},
				Emit: func(ev scheduler.Event) {
					mu.Lock()
					defer mu.Unlock()
					text = append(text, ev.Line)
					if i := strings.Index(ev.Line, "] Batch job "); i >= 0 && strings.Contains(ev.Line, " submitted to queue ") {
						ids = append(ids, strings.Fields(ev.Line[i+len("] Batch job "):])[0])
						if len(ids) == 3 {
							proxy.arm(tc.refuse(ids))
							cancel()
						}
					}
				},
			}
			if err := r.Prepare(f.ctx); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			runErr := r.Execute(ctx)
			took := time.Since(t0)
			mu.Lock()
			console := strings.Join(text, "\n")
			mu.Unlock()
			if !scheduler.IsInterrupted(runErr) || len(ids) != 3 {
				t.Fatalf("run: %v, %d jobs submitted; console:\n%s", runErr, len(ids), console)
			}
			// The splits are children of one array job, whose parent was
			// terminated too (on AWS that ends the children; moto needs
			// each child's own TerminateJob).
			parent := parentOf(ids[0])
			for _, id := range ids {
				if !strings.Contains(id, ":") || parentOf(id) != parent {
					t.Fatalf("jobs %v are not the children of one array job", ids)
				}
			}
			if proxy.callsOf(parent) == 0 {
				t.Errorf("no TerminateJob for the array job %s", parent)
			}
			// What moto says: only jobs the report calls ended got TerminateJob.
			st, err := f.c.Describe(f.ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			killed := 0
			var left []string
			for i, id := range ids {
				terminated := st[id].StatusReason == "metaflow: the task was cancelled"
				if terminated != tc.ended[i] {
					t.Errorf("job %d (%s): terminated in moto %v, want %v (reason %q)", i, id, terminated, tc.ended[i], st[id].StatusReason)
				}
				if tc.ended[i] {
					killed++
				} else {
					left = append(left, id)
				}
				if n := proxy.callsOf(id); tc.retried && !tc.ended[i] && n < 2 {
					t.Errorf("job %s: %d TerminateJob call(s), want retries", id, n)
				}
			}
			if tc.window > 10*time.Second {
				for _, id := range ids {
					if proxy.callsOf(id) < 2 {
						t.Errorf("job %s ended without a retry: the API was refused for its first call", id)
					}
				}
			}
			if got := r.Killed(); got != killed {
				t.Errorf("Killed() = %d, want %d: a job that was not stopped was counted", got, killed)
			}
			var reported []string
			for _, j := range r.LeftRunning() {
				reported = append(reported, j.JobID)
				if j.Executor != "AWS Batch" || j.Decorator != "batch" || !strings.Contains(j.Error, "TerminateJob failed for") {
					t.Errorf("left job %+v", j)
				}
			}
			if strings.Join(sortStrings(reported), ",") != strings.Join(sortStrings(left), ",") {
				t.Errorf("reported left running %v, want %v", reported, left)
			}
			for _, id := range left {
				if !strings.Contains(runErr.Error(), id) {
					t.Errorf("the run's error does not name job %s: %v", id, runErr)
				}
			}
			if len(left) > 0 && !strings.Contains(runErr.Error(), "batch kill --run-id "+r.RunID()) {
				t.Errorf("the run's error does not say how to end the jobs: %v", runErr)
			}
			run, err := store.GetRun(f.ctx, "CancelFlowR", r.RunID())
			if err != nil {
				t.Fatal(err)
			}
			if len(run.JobsLeftRunning) != len(left) {
				t.Errorf("run record lists %d jobs left running, want %d", len(run.JobsLeftRunning), len(left))
			}
			// Bounded: the window, plus one call in flight, plus the run's end.
			if took > tc.window+terminateCallTimeout+10*time.Second {
				t.Errorf("cancel took %s with a %s window", took, tc.window)
			}
			calls := proxy.callsOf(parent)
			for _, id := range ids {
				calls += proxy.callsOf(id)
			}
			t.Logf("cancel took %s (window %s), %d TerminateJob calls", took.Round(time.Millisecond), tc.window, calls)
		})
	}
}

// moto does not end an array job's children with their parent: after the
// parent's TerminateJob and the grace, each child is terminated by its own
// call, and every child is reported stopped only because that call
// succeeded.
func TestEmuArrayCancelFallsBackToEachChild(t *testing.T) {
	const (
		n     = 3
		grace = 500 * time.Millisecond
	)
	f := newFixture(t, false)
	setCancelGrace(t, grace)
	parent := f.submit(JobSpec{Labels: Labels{Flow: "ArrayCancelFlowR", User: "alice", Run: "1", Step: "work", Task: "0..2"}, ArraySize: n})
	e := followerExecutor(t, f.c, 100*time.Millisecond)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	f.c.ResetCalls()
	errs, took, console := cancelArray(ctx, t, e, parent, n, true, cancel)
	calls := f.c.Calls()["Batch.TerminateJob"]
	t.Logf("cancel of %d children on moto: %d TerminateJob calls in %s", n, calls, took.Round(time.Millisecond))
	if calls != n+1 {
		t.Errorf("%d TerminateJob calls, want %d: the parent and each child moto left running", calls, n+1)
	}
	if took < grace {
		t.Errorf("the children were terminated %s after the cancel, before the %s grace", took, grace)
	}
	ids := []string{parent}
	for i, err := range errs {
		ids = append(ids, fmt.Sprintf("%s:%d", parent, i))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("child %d: %v, want it stopped (context.Canceled)", i, err)
		}
	}
	st, err := f.c.Describe(f.ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if st[id].StatusReason != cancelReason {
			t.Errorf("job %s: not terminated in moto (%s, reason %q)", id, st[id].Status, st[id].StatusReason)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", console)
	}
}
