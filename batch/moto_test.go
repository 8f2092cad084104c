//go:build linux

package batch

// Tests of the Batch client against moto_server (moto_fixture_test.go
// starts it and makes each test's queue).

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

const (
	// testImage is built by tests/batch/build-image.sh.
	testImage = "metaflow-r-test:bookworm"
	// noImage is never pulled (jobs on the frozen server never start); if
	// something did try, the only traffic would go to a closed local port.
	noImage = "127.0.0.1:9/metaflow-r-none:0"
)

func TestEmuSubmitWithTags(t *testing.T) {
	f := newFixture(t, false)
	l := Labels{Flow: "BigSumFlowR", User: "savin", Run: "15", Step: "start", Task: "1"}
	id := f.submit(JobSpec{
		Labels: l, Resources: Resources{VCPUs: 2, MemoryMB: 6000},
		Command: []string{"Rscript", "task.R"}, Env: map[string]string{"METAFLOW_RUN_ID": "15"},
		Tags: map[string]string{"team": "ds"}, TimeoutSeconds: 150,
	})
	st, err := f.c.Describe(f.ctx, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := st[id]
	if !ok {
		t.Fatalf("job %s not described", id)
	}
	if s.Name != JobName(l) || s.Status != StateSubmitted {
		t.Errorf("name %q status %s; want %q SUBMITTED", s.Name, s.Status, JobName(l))
	}
	for k, v := range map[string]string{TagFlow: "BigSumFlowR", TagUser: "savin", TagRun: "15", TagStep: "start", TagTask: "1", TagAttempt: "0", TagJobKey: JobName(l), "team": "ds"} {
		if s.Tags[k] != v {
			t.Errorf("tag %s = %q, want %q (tags %v)", k, s.Tags[k], v, s.Tags)
		}
	}

	// The registered definition carries image and resources; the job
	// carries command and environment as overrides.
	raw, err := f.raw.DescribeJobs(f.ctx, &batch.DescribeJobsInput{Jobs: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	d := raw.Jobs[0]
	if got := strings.Join(d.Container.Command, " "); got != "Rscript task.R" {
		t.Errorf("command %q", got)
	}
	if aws.ToInt32(d.Container.Vcpus) != 2 || aws.ToInt32(d.Container.Memory) != 6000 {
		t.Errorf("vcpus %d memory %d, want 2 and 6000", aws.ToInt32(d.Container.Vcpus), aws.ToInt32(d.Container.Memory))
	}
	env := map[string]string{}
	for _, kv := range d.Container.Environment {
		env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
	}
	if env["METAFLOW_RUN_ID"] != "15" {
		t.Errorf("environment %v", env)
	}
	if d.Timeout == nil || aws.ToInt32(d.Timeout.AttemptDurationSeconds) != 150 {
		t.Errorf("job timeout %+v, want 150 s per attempt", d.Timeout)
	}
	defs, err := f.raw.DescribeJobDefinitions(f.ctx, &batch.DescribeJobDefinitionsInput{JobDefinitions: []string{aws.ToString(d.JobDefinition)}})
	if err != nil || len(defs.JobDefinitions) != 1 {
		t.Fatalf("describe job definition: %v", err)
	}
	if img := aws.ToString(defs.JobDefinitions[0].ContainerProperties.Image); img != noImage {
		t.Errorf("image %q", img)
	}

	// The definition is registered once and reused; a given definition is
	// used as is, with resources as overrides.
	f.c.ResetCalls()
	l.Task = "2"
	f.submit(JobSpec{Labels: l, Resources: Resources{VCPUs: 2, MemoryMB: 6000}})
	if calls := f.c.Calls(); calls["Batch.SubmitJob"] != 1 || len(calls) != 1 {
		t.Errorf("second submit made calls %v, want one SubmitJob", calls)
	}
	fresh, err := New(f.ctx, Options{}) // a new process finds the existing definition
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Submit(f.ctx, JobSpec{Queue: f.queue, Image: noImage, Labels: l, Resources: Resources{VCPUs: 2, MemoryMB: 6000}}); err != nil {
		t.Fatal(err)
	}
	if calls := fresh.Calls(); calls["Batch.RegisterJobDefinition"] != 0 || calls["Batch.DescribeJobDefinitions"] != 1 {
		t.Errorf("new client made calls %v, want a lookup and no registration", calls)
	}
	l.Task = "3"
	id3 := f.submit(JobSpec{Labels: l, JobDefinition: aws.ToString(d.JobDefinition), Resources: Resources{VCPUs: 4, MemoryMB: 9000, GPUs: 1}})
	raw, err = f.raw.DescribeJobs(f.ctx, &batch.DescribeJobsInput{Jobs: []string{id3}})
	if err != nil {
		t.Fatal(err)
	}
	if c := raw.Jobs[0].Container; aws.ToString(raw.Jobs[0].JobDefinition) != aws.ToString(d.JobDefinition) {
		t.Errorf("job definition %s, want %s", aws.ToString(raw.Jobs[0].JobDefinition), aws.ToString(d.JobDefinition))
	} else {
		t.Logf("moto with resource overrides: vcpus %d memory %d (moto applies only the deprecated vcpus/memory override keys)", aws.ToInt32(c.Vcpus), aws.ToInt32(c.Memory))
	}

	// Refused before any call: credentials in the environment.
	f.c.ResetCalls()
	_, err = f.c.Submit(f.ctx, JobSpec{Queue: f.queue, Image: noImage, Labels: l, Env: map[string]string{"AWS_SECRET_ACCESS_KEY": "testing"}})
	if err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("submit with the submitter's secret: %v", err)
	}
	if calls := f.c.Calls(); len(calls) != 0 {
		t.Errorf("refused submit made calls %v", calls)
	}
}

func TestEmuBatchedDescribe(t *testing.T) {
	f := newFixture(t, false)
	const n = 150
	ids := submitMany(t, f, n, Labels{Flow: "ForeachFlowR", User: "savin", Run: "3", Step: "work"})
	calls := f.c.Calls()
	perJob := float64(calls["Batch.SubmitJob"]+calls["Batch.RegisterJobDefinition"]+calls["Batch.DescribeJobDefinitions"]) / n
	t.Logf("submission: %v = %.3f calls per job", calls, perJob)
	if calls["Batch.SubmitJob"] != n || perJob > 1.05 {
		t.Errorf("submission calls %v: %.3f per job, want ≤ 1.05", calls, perJob)
	}

	f.c.ResetCalls()
	st, err := f.c.Describe(f.ctx, append(ids, ids[0], "no-such-job"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.c.Calls()["Batch.DescribeJobs"]; got != 2 {
		t.Errorf("describing %d jobs took %d DescribeJobs calls, want 2", n, got)
	}
	if len(st) != n {
		t.Errorf("described %d jobs, want %d", len(st), n)
	}
	for _, id := range ids {
		if st[id].Status != StateSubmitted {
			t.Fatalf("job %s: %+v", id, st[id])
		}
	}
	if _, ok := st["no-such-job"]; ok {
		t.Error("an unknown id was described")
	}
	f.c.ResetCalls()
	if st, err := f.c.Describe(f.ctx, nil); err != nil || len(st) != 0 || len(f.c.Calls()) != 0 {
		// moto answers an empty DescribeJobs with every job it has.
		t.Errorf("describing no jobs: %d jobs, %v, calls %v", len(st), err, f.c.Calls())
	}
}

func submitMany(t testing.TB, f *fixture, n int, base Labels) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			l := base
			l.Task = fmt.Sprint(i + 1)
			id, err := f.c.Submit(f.ctx, JobSpec{Queue: f.queue, Image: noImage, Labels: l})
			ids[i] = id
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// BenchmarkEmuSubmitDescribe reports the API calls the issue budgets:
// submission calls per job (≤ 1.05) and DescribeJobs calls per 100 active
// jobs per poll (≤ 1). Run: go test ./batch -run - -bench Emu -benchtime 500x
func BenchmarkEmuSubmitDescribe(b *testing.B) {
	f := newFixture(b, false)
	b.ResetTimer()
	ids := submitMany(b, f, b.N, Labels{Flow: "BenchFlowR", User: "bench", Run: fmt.Sprint(time.Now().UnixNano()), Step: "work"})
	submit := f.c.Calls()
	f.c.ResetCalls()
	if _, err := f.c.Describe(f.ctx, ids); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(submit["Batch.SubmitJob"]+submit["Batch.RegisterJobDefinition"]+submit["Batch.DescribeJobDefinitions"])/n, "submit-calls/job")
	b.ReportMetric(float64(f.c.Calls()["Batch.DescribeJobs"])*100/n, "describe-calls/100jobs")
}

func TestEmuListFiltersAndKill(t *testing.T) {
	f := newFixture(t, false)
	type job struct {
		l  Labels
		id string
	}
	longStep := strings.Repeat("a_very_long_step_name_", 6) // the name gets cut: identity in tags
	jobs := map[string]*job{
		"mine15a":    {l: Labels{Flow: "Flow", User: "savin", Run: "15", Step: "start", Task: "1"}},
		"mine15b":    {l: Labels{Flow: "Flow", User: "savin", Run: "15", Step: "work", Task: "2"}},
		"mine15cut":  {l: Labels{Flow: "Flow", User: "savin", Run: "15", Step: longStep, Task: "3"}},
		"mine16":     {l: Labels{Flow: "Flow", User: "savin", Run: "16", Step: "start", Task: "1"}},
		"mine150":    {l: Labels{Flow: "Flow", User: "savin", Run: "150", Step: "start", Task: "1"}},
		"other17":    {l: Labels{Flow: "Flow", User: "ville", Run: "17", Step: "start", Task: "1"}},
		"otherFlow":  {l: Labels{Flow: "OtherFlow", User: "savin", Run: "15", Step: "start", Task: "1"}},
		"lowerFlow":  {l: Labels{Flow: "flow", User: "savin", Run: "15", Step: "start", Task: "1"}}, // server match is case-insensitive
		"prefixUser": {l: Labels{Flow: "Flow", User: "savin2", Run: "15", Step: "start", Task: "1"}},
		"cutOther":   {l: Labels{Flow: "Flow", User: "ville", Run: "15", Step: longStep, Task: "3"}},
	}
	for _, j := range jobs {
		j.id = f.submit(JobSpec{Labels: j.l})
	}
	// Not ours although it looks close: must be ignored, not misparsed.
	if _, err := f.raw.SubmitJob(f.ctx, &batch.SubmitJobInput{JobName: aws.String("mf-Flow-savin-15-garbage"), JobQueue: aws.String(f.queue), JobDefinition: aws.String(jobDefName(noImage, Resources{}.WithDefaults(), Container{}))}); err != nil {
		t.Fatal(err)
	}

	list := func(flt ListFilter) []string {
		t.Helper()
		got, err := f.c.List(f.ctx, f.queue, flt)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]string{}
		for k, j := range jobs {
			byID[j.id] = k
		}
		var keys []string
		for _, g := range got {
			k, ok := byID[g.ID]
			if !ok {
				t.Errorf("List(%+v) returned a foreign job %s %q", flt, g.ID, g.Name)
				continue
			}
			if g.Labels != jobs[k].l {
				t.Errorf("List(%+v): %s labels %+v, want %+v", flt, k, g.Labels, jobs[k].l)
			}
			keys = append(keys, k)
		}
		return sortStrings(keys)
	}
	tests := []struct {
		f    ListFilter
		want []string
	}{
		{ListFilter{Flow: "Flow", User: "savin", Run: "15"}, []string{"mine15a", "mine15b", "mine15cut"}},
		{ListFilter{Flow: "Flow", User: "savin"}, []string{"mine150", "mine15a", "mine15b", "mine15cut", "mine16"}},
		{ListFilter{Flow: "Flow", Run: "17"}, []string{"other17"}},
		{ListFilter{Flow: "Flow", User: "ville"}, []string{"cutOther", "other17"}},
		{ListFilter{Flow: "Flow"}, []string{"cutOther", "mine150", "mine15a", "mine15b", "mine15cut", "mine16", "other17", "prefixUser"}},
		{ListFilter{Flow: "NoSuchFlow"}, nil},
	}
	for _, tc := range tests {
		if got := list(tc.f); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("List(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
	if _, err := f.c.List(f.ctx, f.queue, ListFilter{User: "savin"}); err == nil {
		t.Error("List without a flow accepted")
	}

	// batch kill --run-id 15 (my runs): terminate exactly what List returns.
	victims, err := f.c.List(f.ctx, f.queue, ListFilter{Flow: "Flow", User: "savin", Run: "15"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range victims {
		if err := f.c.Terminate(f.ctx, v.ID, "killed by test"); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	for _, j := range jobs {
		all = append(all, j.id)
	}
	st, err := f.c.Describe(f.ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	for k, j := range jobs {
		killed := st[j.id].StatusReason == "killed by test"
		want := strings.HasPrefix(k, "mine15") && k != "mine150"
		if killed != want {
			t.Errorf("%s: terminated %v, want %v (%+v)", k, killed, want, st[j.id])
		}
	}
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func TestEmuCheckQueue(t *testing.T) {
	f := newFixture(t, false)
	small := f.newQueue(f.managedCE(4, "m5.large", "m5.xlarge"), types.JQStateEnabled)
	optimal := f.newQueue(f.managedCE(256, "optimal"), types.JQStateEnabled)
	disabled := f.newQueue(f.managedCE(256, "optimal"), types.JQStateDisabled)
	tests := []struct {
		queue string
		r     Resources
		want  error
		msg   string
	}{
		{small, Resources{}, nil, ""},
		{small, Resources{VCPUs: 4, MemoryMB: 15000}, nil, ""},
		{small, Resources{VCPUs: 8}, ErrUnsatisfiable, "maxvCpus is 4"},
		{small, Resources{MemoryMB: 60000}, ErrUnsatisfiable, "m5.xlarge has 16 GiB"},
		{small, Resources{GPUs: 1}, ErrUnsatisfiable, "m5.large has no GPU"},
		{optimal, Resources{VCPUs: 64, MemoryMB: 60000}, nil, ""},
		{optimal, Resources{GPUs: 1}, ErrUnsatisfiable, "no GPU"},
		{disabled, Resources{}, ErrUnsatisfiable, "DISABLED"},
		{f.queue, Resources{VCPUs: 128, GPUs: 4}, nil, ""}, // unmanaged: cannot know
		{"no-such-queue", Resources{}, ErrQueueNotFound, "METAFLOW_BATCH_JOB_QUEUE"},
	}
	for _, tc := range tests {
		f.c.ResetCalls()
		err := f.c.CheckQueue(f.ctx, tc.queue, tc.r)
		if !errors.Is(err, tc.want) || err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("CheckQueue(%s, %+v) = %v, want %v containing %q", tc.queue, tc.r, err, tc.want, tc.msg)
		} else if err != nil {
			t.Logf("CheckQueue(%s, %v): %v", tc.queue, tc.r, err)
		}
		if n := f.c.Calls(); n["Batch.DescribeJobQueues"] != 1 || n["Batch.DescribeComputeEnvironments"] > 1 {
			t.Errorf("CheckQueue calls %v", n)
		}
	}
}

func TestEmuRscriptJob(t *testing.T) {
	dockerImage(t)
	f := newFixture(t, true)
	l := Labels{Flow: "HelloFlowR", User: "savin", Run: "1", Step: "start", Task: "1"}
	submitted := time.Now()
	id := f.submit(JobSpec{
		Image: testImage, Labels: l, Resources: Resources{MemoryMB: 512},
		Command: []string{"Rscript", "-e", `cat(1+1, "\n"); message("env: ", Sys.getenv("METAFLOW_TEST"), " secret: [", Sys.getenv("AWS_SECRET_ACCESS_KEY"), "]")`},
		Env:     map[string]string{"METAFLOW_TEST": "yes"},
	})
	s, seen := f.waitDone(id, 2*time.Minute)
	t.Logf("job start latency under moto: states first seen after submit %v; submit→done %s", seen, time.Since(submitted).Round(time.Millisecond))
	// moto's DescribeJobs has no exit code (see summaryExitCode).
	if s.Status != StateSucceeded || s.ExitCode != nil && *s.ExitCode != 0 {
		t.Fatalf("job ended %+v", s)
	}
	if code := f.summaryExitCode(l, id); code != 0 {
		t.Errorf("ListJobs exit code %d, want 0", code)
	}
	if want := jobDefName(testImage, Resources{VCPUs: 1, MemoryMB: 512}, Container{}) + "/default/" + id; s.LogStream != want {
		t.Errorf("log stream %q, want %q", s.LogStream, want)
	}
	lines, err := f.c.LogTail(f.ctx, s.LogStream, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("log: %q", lines)
	// moto merges stdout and stderr by timestamp, so their order may swap.
	both := map[string]bool{"2": true, "env: yes secret: []": true}
	if len(lines) != 2 || !both[lines[0]] || !both[lines[1]] || lines[0] == lines[1] {
		t.Errorf("log lines %q, want \"2\" and \"env: yes secret: []\" in either order", lines)
	}
	if last, err := f.c.LogTail(f.ctx, s.LogStream, 1); err != nil || len(last) != 1 || len(lines) != 2 || last[0] != lines[1] {
		t.Errorf("last line: %q, %v (all: %q)", last, err, lines)
	}
	if _, err := f.c.LogTail(f.ctx, "no/such/stream", 5); !errors.Is(err, ErrNoLogs) {
		t.Errorf("missing stream: %v, want ErrNoLogs", err)
	}
}

func TestEmuFailedAndTerminatedJobs(t *testing.T) {
	dockerImage(t)
	f := newFixture(t, true)
	l := Labels{Flow: "FailFlowR", User: "savin", Run: "1", Step: "start", Task: "1"}
	failing := f.submit(JobSpec{Image: testImage, Labels: l, Resources: Resources{MemoryMB: 512},
		Command: []string{"Rscript", "-e", `for (i in 1:30) cat("line", i, "\n"); stop("boom")`}})
	l.Task = "2"
	sleeper := f.submit(JobSpec{Image: testImage, Labels: l, Resources: Resources{MemoryMB: 512},
		Command: []string{"Rscript", "-e", `cat("sleeping\n"); Sys.sleep(120)`}})

	s, _ := f.waitDone(failing, 2*time.Minute)
	if s.Status != StateFailed || s.ExitCode != nil && *s.ExitCode != 1 {
		t.Errorf("failing job ended %+v, want FAILED with exit code 1", s)
	}
	l.Task = "1"
	if code := f.summaryExitCode(l, failing); code != 1 {
		t.Errorf("ListJobs exit code %d, want 1", code)
	}
	tail, err := f.c.LogTail(f.ctx, s.LogStream, 3)
	t.Logf("failed job: status reason %q, container reason %q, exit code %v (DescribeJobs), last lines %q (%v)", s.StatusReason, s.Reason, deref(s.ExitCode), tail, err)
	if err != nil || len(tail) != 3 {
		t.Errorf("tail of failed job %q, %v", tail, err)
	}
	// moto merges stdout and stderr by timestamp: the error may come before
	// the last stdout lines, so look for it in the whole log.
	all, err := f.c.LogTail(f.ctx, s.LogStream, 100)
	if joined := strings.Join(all, "\n"); err != nil || len(all) != 32 || !strings.Contains(joined, "boom") || !strings.Contains(joined, "line 30") {
		t.Errorf("log of failed job %q, %v", all, err)
	}

	for {
		st, err := f.c.Describe(f.ctx, []string{sleeper})
		if err != nil {
			t.Fatal(err)
		}
		if st[sleeper].Status == StateRunning {
			break
		}
		if st[sleeper].Status.Done() {
			t.Fatalf("sleeper ended early: %+v", st[sleeper])
		}
		time.Sleep(100 * time.Millisecond)
	}
	killed := time.Now()
	if err := f.c.Terminate(f.ctx, sleeper, "Ctrl-C"); err != nil {
		t.Fatal(err)
	}
	s, _ = f.waitDone(sleeper, time.Minute)
	t.Logf("terminated running job: %s after %s, reason %q, exit %v", s.Status, time.Since(killed).Round(time.Millisecond), s.StatusReason, deref(s.ExitCode))
	if s.Status != StateFailed || s.StatusReason != "Ctrl-C" {
		t.Errorf("terminated job ended %+v", s)
	}
}

// summaryExitCode is a finished job's exit code from ListJobs: moto puts it
// only in job summaries (DescribeJobs replaces the container block with one
// that has no exitCode), AWS in both.
func (f *fixture) summaryExitCode(l Labels, id string) int {
	f.t.Helper()
	out, err := f.raw.ListJobs(f.ctx, &batch.ListJobsInput{
		JobQueue: aws.String(f.queue),
		Filters:  []types.KeyValuesPair{{Name: aws.String("JOB_NAME"), Values: []string{JobName(l)}}},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, s := range out.JobSummaryList {
		if aws.ToString(s.JobId) == id && s.Container != nil && s.Container.ExitCode != nil {
			return int(*s.Container.ExitCode)
		}
	}
	f.t.Fatalf("no exit code for job %s in ListJobs", id)
	return -1
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
