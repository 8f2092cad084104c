//go:build linux

package batch

// IAM roles and Linux parameters (batch(iam_role=, execution_role=,
// shared_memory=, max_swap=, swappiness=)) against the frozen moto_server:
// what a submitted job's definition carries. moto's DescribeJobs leaves
// jobRoleArn, executionRoleArn and linuxParameters out of a job's container
// block (AWS has them there, copied from the definition), so the tests read
// them from the definition the job names, as moto stores it.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// jobContainer returns the definition name and container properties of a
// submitted job's definition.
func (f *fixture) jobContainer(id string) (string, *types.ContainerProperties) {
	f.t.Helper()
	jobs, err := f.raw.DescribeJobs(f.ctx, &batch.DescribeJobsInput{Jobs: []string{id}})
	if err != nil || len(jobs.Jobs) != 1 {
		f.t.Fatalf("describe job %s: %v", id, err)
	}
	arn := aws.ToString(jobs.Jobs[0].JobDefinition)
	defs, err := f.raw.DescribeJobDefinitions(f.ctx, &batch.DescribeJobDefinitionsInput{JobDefinitions: []string{arn}})
	if err != nil || len(defs.JobDefinitions) != 1 || defs.JobDefinitions[0].ContainerProperties == nil {
		f.t.Fatalf("describe job definition %s of job %s: %v", arn, id, err)
	}
	d := defs.JobDefinitions[0]
	return aws.ToString(d.JobDefinitionName), d.ContainerProperties
}

// wantContainer checks roles and Linux parameters; nil pointers mean absent.
func wantContainer(t *testing.T, what string, p *types.ContainerProperties, jobRole, execRole string, shm, maxSwap, swappiness *int32) {
	t.Helper()
	if got := aws.ToString(p.JobRoleArn); got != jobRole {
		t.Errorf("%s: jobRoleArn %q, want %q", what, got, jobRole)
	}
	if got := aws.ToString(p.ExecutionRoleArn); got != execRole {
		t.Errorf("%s: executionRoleArn %q, want %q", what, got, execRole)
	}
	lp := p.LinuxParameters
	if lp == nil {
		lp = &types.LinuxParameters{}
	}
	show := func(p *int32) any {
		if p == nil {
			return "absent"
		}
		return *p
	}
	for _, c := range []struct {
		name      string
		got, want *int32
	}{{"sharedMemorySize", lp.SharedMemorySize, shm}, {"maxSwap", lp.MaxSwap, maxSwap}, {"swappiness", lp.Swappiness, swappiness}} {
		if (c.got == nil) != (c.want == nil) || c.got != nil && *c.got != *c.want {
			t.Errorf("%s: linuxParameters.%s %v, want %v", what, c.name, show(c.got), show(c.want))
		}
	}
}

func i32(n int32) *int32 { return &n }

func TestEmuSubmitRolesAndLinuxParameters(t *testing.T) {
	f := newFixture(t, false)
	const (
		defaultJob  = "arn:aws:iam::123456789012:role/metaflow-default-job"
		defaultExec = "arn:aws:iam::123456789012:role/metaflow-default-exec"
		stepRole    = "arn:aws:iam::123456789012:role/step-role"
		stepExec    = "arn:aws:iam::123456789012:role/step-exec"
	)
	c, err := New(f.ctx, Options{JobRoleARN: defaultJob, ExecutionRoleARN: defaultExec})
	if err != nil {
		t.Fatal(err)
	}
	l := Labels{Flow: "RolesFlowR", User: "savin", Run: "1", Step: "start"}
	submit := func(task string, ctr Container) string {
		t.Helper()
		l := l
		l.Task = task
		id, err := c.Submit(f.ctx, JobSpec{Queue: f.queue, Image: noImage, Labels: l, Resources: Resources{MemoryMB: 1000}, Container: ctr})
		if err != nil {
			t.Fatalf("submit %+v: %v", ctr, err)
		}
		return id
	}

	all := submit("1", Container{JobRole: stepRole, ExecutionRole: stepExec, SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(10)})
	allName, p := f.jobContainer(all)
	wantContainer(t, "all given", p, stepRole, stepExec, i32(256), i32(512), i32(10))
	if aws.ToString(p.Image) != noImage {
		t.Errorf("image %q", aws.ToString(p.Image))
	}

	// Nothing given: the configured roles, no Linux parameters.
	defaults := submit("2", Container{})
	defName, p := f.jobContainer(defaults)
	wantContainer(t, "defaults", p, defaultJob, defaultExec, nil, nil, nil)

	// Each Linux parameter is set on its own, as Metaflow does: swappiness
	// without max_swap (Batch then ignores it), and 0 is a value.
	alone := submit("3", Container{Swappiness: intp(0)})
	aloneName, p := f.jobContainer(alone)
	wantContainer(t, "swappiness alone", p, defaultJob, defaultExec, nil, nil, i32(0))
	noSwap := submit("4", Container{MaxSwapMiB: intp(0), SharedMemoryMiB: 64})
	noSwapName, p := f.jobContainer(noSwap)
	wantContainer(t, "max_swap 0", p, defaultJob, defaultExec, i32(64), i32(0), nil)
	// The step's job role alone: the configured execution role stays.
	roleOnly := submit("5", Container{JobRole: stepRole})
	roleName, p := f.jobContainer(roleOnly)
	wantContainer(t, "job role only", p, stepRole, defaultExec, nil, nil, nil)

	names := map[string]bool{}
	for _, n := range []string{allName, defName, aloneName, noSwapName, roleName} {
		if names[n] {
			t.Errorf("two different definitions share the name %s", n)
		}
		names[n] = true
	}

	// The same container again reuses its definition: one SubmitJob call.
	c.ResetCalls()
	again := submit("6", Container{JobRole: stepRole, ExecutionRole: stepExec, SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(10)})
	if calls := c.Calls(); calls["Batch.SubmitJob"] != 1 || len(calls) != 1 {
		t.Errorf("second submit of the same container made calls %v, want one SubmitJob", calls)
	}
	if n, _ := f.jobContainer(again); n != allName {
		t.Errorf("same container, definition %s then %s", allName, n)
	}
	// Another process finds it (one lookup, no registration).
	fresh, err := New(f.ctx, Options{JobRoleARN: defaultJob, ExecutionRoleARN: defaultExec})
	if err != nil {
		t.Fatal(err)
	}
	l.Task = "7"
	if _, err := fresh.Submit(f.ctx, JobSpec{Queue: f.queue, Image: noImage, Labels: l, Resources: Resources{MemoryMB: 1000},
		Container: Container{JobRole: stepRole, ExecutionRole: stepExec, SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(10)}}); err != nil {
		t.Fatal(err)
	}
	if calls := fresh.Calls(); calls["Batch.RegisterJobDefinition"] != 0 || calls["Batch.DescribeJobDefinitions"] != 1 {
		t.Errorf("new client made calls %v, want a lookup and no registration", calls)
	}
}

// The executor end to end on the frozen server: a step's batch and
// resources decorators and the configured execution role reach the job's
// definition. The job never starts; the run is cancelled once it is
// submitted, which terminates it.
func TestEmuExecutorRolesAndLinuxParameters(t *testing.T) {
	f := newFixture(t, false)
	engine, err := exec.LookPath("true") // any small linux/amd64 ELF: the job never runs it
	if err != nil {
		t.Skip("no `true` binary to stand in for the engine")
	}
	if err := checkELF(engine); err != nil {
		t.Skipf("%s cannot stand in for the engine: %v", engine, err)
	}
	bucket := strings.ToLower(f.name("mf-roles"))
	const defaultExec = "arn:aws:iam::123456789012:role/configured-exec"
	exe, err := NewExecutor(f.ctx, Config{
		Queue: f.queue, Image: noImage, S3Root: "s3://" + bucket + "/metaflow", EngineBinary: engine,
		JobRole: "arn:aws:iam::123456789012:role/configured-job", ExecutionRole: defaultExec,
	})
	if err != nil {
		t.Fatal(err)
	}
	createBucket(t, exe.s3, bucket)
	dir := t.TempDir()
	code := filepath.Join(dir, "_code.rds")
	if err := os.WriteFile(code, []byte("not run"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(task string, decos map[string]graph.Decorator) string {
		t.Helper()
		ctx, cancel := context.WithCancel(f.ctx)
		defer cancel()
		var (
			mu sync.Mutex
			id string
		)
		if err := exe.Preflight(ctx, "start", decos, ""); err != nil {
			t.Fatalf("preflight: %v", err)
		}
		_, err := exe.Run(ctx, &scheduler.Launch{
			Spec: &scheduler.TaskSpec{Flow: "RolesFlowR", RunID: "1", Step: "start", TaskID: task, Code: code,
				OutputDir: filepath.Join(dir, task), Current: map[string]string{"username": "tester"}},
			Decorators: decos,
			Submitted: func(jobID, _ string) {
				mu.Lock()
				id = jobID
				mu.Unlock()
				cancel()
			},
		})
		mu.Lock()
		defer mu.Unlock()
		if id == "" {
			t.Fatalf("no job submitted: %v", err)
		}
		if err == nil {
			t.Errorf("run of job %s ended without error after cancel", id)
		}
		return id
	}

	id := run("1", map[string]graph.Decorator{
		"batch": {Name: "batch", Args: map[string]string{"iam_role": "arn:aws:iam::123456789012:role/step-role",
			"execution_role": "arn:aws:iam::123456789012:role/step-exec", "shared_memory": "256", "max_swap": "512",
			"swappiness": "10", "memory": "1000"}},
		"resources": {Name: "resources", Args: map[string]string{"shared_memory": "128"}},
	})
	_, p := f.jobContainer(id)
	wantContainer(t, "step decorators", p, "arn:aws:iam::123456789012:role/step-role", "arn:aws:iam::123456789012:role/step-exec",
		i32(256), i32(512), i32(10))
	if st, err := exe.Client().Describe(f.ctx, []string{id}); err != nil || st[id].StatusReason != "metaflow: the task was cancelled" {
		t.Errorf("the cancelled job was not terminated: %+v, %v", st[id], err)
	}

	// resources(shared_memory=) larger than batch's wins; the roles are
	// the configured ones.
	id = run("2", map[string]graph.Decorator{
		"batch":     {Name: "batch", Args: map[string]string{"shared_memory": "64", "memory": "1000"}},
		"resources": {Name: "resources", Args: map[string]string{"shared_memory": "300.5"}},
	})
	_, p = f.jobContainer(id)
	wantContainer(t, "resources and batch", p, "arn:aws:iam::123456789012:role/configured-job", defaultExec, i32(301), nil, nil)

	// A bad value is refused before the run, as a step that can never run.
	bad := map[string]graph.Decorator{"batch": {Name: "batch", Args: map[string]string{"swappiness": "101"}}}
	if err := exe.Preflight(f.ctx, "start", bad, ""); !errors.Is(err, scheduler.ErrCannotRun) || !strings.Contains(err.Error(), "swappiness") {
		t.Errorf("preflight of swappiness 101: %v", err)
	}
}
