//go:build linux

package batch

// batch list|kill (Plugin.Jobs) against the frozen moto server: jobs stay
// SUBMITTED, so they are listed and killed without docker.

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// killedNow returns, sorted, the keys of the jobs among ids (key -> id)
// that batch kill terminated.
func (f *fixture) killedNow(ids map[string]string) string {
	f.t.Helper()
	var all []string
	byID := map[string]string{}
	for k, id := range ids {
		all = append(all, id)
		byID[id] = k
	}
	st, err := f.c.Describe(f.ctx, all)
	if err != nil {
		f.t.Fatal(err)
	}
	var got []string
	for id, s := range st {
		if s.StatusReason == terminateReason {
			got = append(got, byID[id])
		}
	}
	sort.Strings(got)
	return strings.Join(got, " ")
}

func TestEmuJobsListAndKill(t *testing.T) {
	f := newFixture(t, false)
	const flow = "BatchListFlowR" // the queue is this test's own
	jobs := map[string]Labels{
		"alice15start": {Flow: flow, User: "alice", Run: "15", Step: "start", Task: "1"},
		"alice15work2": {Flow: flow, User: "alice", Run: "15", Step: "work", Task: "2"},
		"alice15work3": {Flow: flow, User: "alice", Run: "15", Step: "work", Task: "3", Attempt: 1},
		"alice14":      {Flow: flow, User: "alice", Run: "14", Step: "start", Task: "1"},
		"alice150":     {Flow: flow, User: "alice", Run: "150", Step: "start", Task: "1"},
		"bob15":        {Flow: flow, User: "bob", Run: "15", Step: "start", Task: "1"},
		"otherFlow15":  {Flow: "OtherFlowR", User: "alice", Run: "15", Step: "start", Task: "1"},
		"lowerFlow15":  {Flow: strings.ToLower(flow), User: "alice", Run: "15", Step: "start", Task: "1"},
	}
	ids := map[string]string{}
	byID := map[string]string{}
	for k, l := range jobs {
		id := f.submit(JobSpec{Labels: l})
		ids[k], byID[id] = id, k
	}
	// The datastore knows runs 14 and 15 of the flow: 15 is the latest.
	root := filepath.Join(t.TempDir(), ".metaflow")
	for _, r := range []string{"14", "15"} {
		if err := os.MkdirAll(filepath.Join(root, flow, r), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := NewPlugin()

	// Without configuration: the executor's one-line error.
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "")
	if _, err := p.Jobs(f.ctx, inStore(root, scheduler.JobQuery{Flow: flow, User: "alice"})); err == nil ||
		!strings.Contains(err.Error(), "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE") {
		t.Fatalf("Jobs without configuration: %v", err)
	}
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", f.queue)
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://metaflow-test/prefix")

	call := func(q scheduler.JobQuery) (*scheduler.JobReport, []string) {
		t.Helper()
		q.Flow = flow
		rep, err := p.Jobs(f.ctx, inStore(root, q))
		if err != nil {
			t.Fatalf("Jobs(%+v): %v", q, err)
		}
		var got []string
		for _, j := range rep.Jobs {
			k, ok := byID[j.ID]
			if !ok {
				t.Errorf("Jobs(%+v) returned a foreign job %s %q", q, j.ID, j.Name)
				continue
			}
			l := jobs[k]
			if j.RunID != l.Run || j.Step != l.Step || j.TaskID != l.Task || j.User != l.User ||
				j.Attempt != l.Attempt || j.Status != "SUBMITTED" || j.Name != JobName(l) {
				t.Errorf("Jobs(%+v): job %s is %+v, want labels %+v", q, k, j, l)
			}
			got = append(got, k)
		}
		sort.Strings(got)
		return rep, got
	}
	want := func(what string, got []string, w ...string) {
		t.Helper()
		sort.Strings(w)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s: got %v, want %v", what, got, w)
		}
	}

	// batch list: the latest run (15) of the flow, by alice.
	rep, got := call(scheduler.JobQuery{User: "alice"})
	want("latest run", got, "alice15start", "alice15work2", "alice15work3")
	if rep.RunID != "15" || rep.Queue != f.queue || rep.Killed != 0 {
		t.Errorf("latest run: run %q queue %q killed %d", rep.RunID, rep.Queue, rep.Killed)
	}
	_, got = call(scheduler.JobQuery{User: "alice", RunID: "14"})
	want("--run-id 14", got, "alice14")
	_, got = call(scheduler.JobQuery{User: "alice", AllRuns: true})
	want("--my-runs", got, "alice15start", "alice15work2", "alice15work3", "alice14", "alice150")
	_, got = call(scheduler.JobQuery{User: "bob", AllRuns: true})
	want("--user bob", got, "bob15")
	_, got = call(scheduler.JobQuery{User: "carol", AllRuns: true})
	want("--user carol", got)

	// batch kill: exactly the latest run's jobs of alice.
	rep, got = call(scheduler.JobQuery{User: "alice", Kill: true})
	want("kill latest", got, "alice15start", "alice15work2", "alice15work3")
	if rep.Killed != 3 {
		t.Errorf("kill latest: killed %d, want 3", rep.Killed)
	}
	want("after kill latest", strings.Fields(f.killedNow(ids)), "alice15start", "alice15work2", "alice15work3")

	// batch kill --run-id 14 and then --my-runs: never bob's nor other flows'.
	rep, _ = call(scheduler.JobQuery{User: "alice", RunID: "14", Kill: true})
	if rep.Killed != 1 {
		t.Errorf("kill --run-id 14: killed %d, want 1", rep.Killed)
	}
	call(scheduler.JobQuery{User: "alice", AllRuns: true, Kill: true})
	want("after kill --my-runs", strings.Fields(f.killedNow(ids)), "alice15start", "alice15work2", "alice15work3", "alice14", "alice150")
	st, err := f.c.Describe(f.ctx, []string{ids["bob15"], ids["otherFlow15"], ids["lowerFlow15"]})
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range st {
		if s.Status != StateSubmitted || s.StatusReason != "" {
			t.Errorf("%s was touched: %+v", byID[id], s)
		}
	}
	// batch kill --user bob.
	_, got = call(scheduler.JobQuery{User: "bob", AllRuns: true, Kill: true})
	want("kill --user bob", got, "bob15")
	want("after kill --user bob", strings.Fields(f.killedNow(ids)), "alice15start", "alice15work2", "alice15work3", "alice14", "alice150", "bob15")
}

// TestEmuJobsStepQueues: jobs that steps sent to their own queue
// (batch(queue=) in the run's recorded graph) are listed and killed with the
// run's; jobs of other flows, users or runs in those queues are not.
func TestEmuJobsStepQueues(t *testing.T) {
	f := newFixture(t, false)
	ce := f.unmanagedCE()
	queue, stepQueue, oldQueue := f.queue, f.newQueue(ce, types.JQStateEnabled), f.newQueue(ce, types.JQStateEnabled)
	const flow = "StepQueueFlowR" // the queues are this test's own
	type sub struct {
		queue  string
		labels Labels
	}
	jobs := map[string]sub{
		"alice15start":  {queue, Labels{Flow: flow, User: "alice", Run: "15", Step: "start", Task: "1"}},
		"alice15work2":  {stepQueue, Labels{Flow: flow, User: "alice", Run: "15", Step: "work", Task: "2"}},
		"alice15work3":  {stepQueue, Labels{Flow: flow, User: "alice", Run: "15", Step: "work", Task: "3", Attempt: 1}},
		"alice150":      {stepQueue, Labels{Flow: flow, User: "alice", Run: "150", Step: "work", Task: "2"}},
		"bob15":         {stepQueue, Labels{Flow: flow, User: "bob", Run: "15", Step: "work", Task: "2"}},
		"otherFlow15":   {stepQueue, Labels{Flow: "OtherFlowR", User: "alice", Run: "15", Step: "work", Task: "2"}},
		"alice14":       {oldQueue, Labels{Flow: flow, User: "alice", Run: "14", Step: "start", Task: "1"}},
		"bob14":         {oldQueue, Labels{Flow: flow, User: "bob", Run: "14", Step: "start", Task: "1"}},
		"alice13":       {queue, Labels{Flow: flow, User: "alice", Run: "13", Step: "start", Task: "1"}},
		"otherFlowDflt": {queue, Labels{Flow: "OtherFlowR", User: "alice", Run: "15", Step: "start", Task: "1"}},
	}
	ids := map[string]string{}
	byID := map[string]string{}
	for k, j := range jobs {
		id := f.submit(JobSpec{Queue: j.queue, Labels: j.labels})
		ids[k], byID[id] = id, k
	}
	// The datastore: run 15 (the latest) sent work to step-queue and start to
	// the default queue (named explicitly); run 14 used old-queue; run 13
	// has no metadata.
	root := filepath.Join(t.TempDir(), ".metaflow")
	putRun(t, root, flow, "15", batchDeco(queue), batchDeco(stepQueue), batchDeco(stepQueue))
	putRun(t, root, flow, "14", batchDeco(oldQueue))
	if err := os.MkdirAll(filepath.Join(root, flow, "13"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := NewPlugin()
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", queue)
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://metaflow-test/prefix")

	names := func(rep *scheduler.JobReport) string {
		var got []string
		for _, j := range rep.Jobs {
			k, ok := byID[j.ID]
			if !ok {
				k = "foreign:" + j.ID
			} else if l := jobs[k].labels; j.RunID != l.Run || j.Step != l.Step || j.TaskID != l.Task || j.User != l.User || j.Attempt != l.Attempt {
				t.Errorf("job %s is %+v, want labels %+v", k, j, l)
			}
			got = append(got, k)
		}
		sort.Strings(got)
		return strings.Join(got, " ")
	}
	for _, tc := range []struct {
		what   string
		q      scheduler.JobQuery
		want   string // the jobs listed (and, with kill, terminated)
		killed string // every job terminated so far
	}{
		{"list latest (15)", scheduler.JobQuery{User: "alice"},
			"alice15start alice15work2 alice15work3", ""},
		{"list --run-id 14", scheduler.JobQuery{User: "alice", RunID: "14"},
			"alice14", ""},
		{"list --run-id 13, without metadata", scheduler.JobQuery{User: "alice", RunID: "13"},
			"alice13", ""},
		{"list --my-runs", scheduler.JobQuery{User: "alice", AllRuns: true},
			"alice13 alice14 alice150 alice15start alice15work2 alice15work3", ""},
		{"list --user bob", scheduler.JobQuery{User: "bob", AllRuns: true},
			"bob14 bob15", ""},
		{"kill latest (15)", scheduler.JobQuery{User: "alice", Kill: true},
			"alice15start alice15work2 alice15work3", "alice15start alice15work2 alice15work3"},
		{"kill --my-runs", scheduler.JobQuery{User: "alice", AllRuns: true, Kill: true},
			// Killed jobs stay SUBMITTED in frozen moto, so they are listed again.
			"alice13 alice14 alice150 alice15start alice15work2 alice15work3",
			"alice13 alice14 alice150 alice15start alice15work2 alice15work3"},
	} {
		tc.q.Flow = flow
		rep, err := p.Jobs(f.ctx, inStore(root, tc.q))
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if got := names(rep); got != tc.want {
			t.Errorf("%s: listed %q, want %q", tc.what, got, tc.want)
		}
		if tc.q.Kill && rep.Killed != len(rep.Jobs) {
			t.Errorf("%s: killed %d of %d", tc.what, rep.Killed, len(rep.Jobs))
		}
		if rep.Queue != queue {
			t.Errorf("%s: queue %q, want %q", tc.what, rep.Queue, queue)
		}
		if got := f.killedNow(ids); got != tc.killed {
			t.Errorf("%s: terminated so far %q, want %q", tc.what, got, tc.killed)
		}
	}
	// Other users' and other flows' jobs in the same queues were never touched.
	st, err := f.c.Describe(f.ctx, []string{ids["bob15"], ids["otherFlow15"], ids["bob14"], ids["otherFlowDflt"]})
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range st {
		if s.Status != StateSubmitted || s.StatusReason != "" {
			t.Errorf("%s was touched: %+v", byID[id], s)
		}
	}
	if len(st) != 4 {
		t.Errorf("described %d of 4 untouched jobs", len(st))
	}
}
