package batch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

func intp(n int) *int { return &n }

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// Every field of a job definition is in its name's hash: definitions that
// differ in any one never share a name. Definitions without an execution
// role or Linux parameters keep the names earlier versions gave them.
func TestJobDefNameCoversTheContainer(t *testing.T) {
	r := Resources{VCPUs: 1, MemoryMB: 4000}
	const img = "rocker/r-ver:4.4.1"
	// Names registered by earlier versions (v1 key), so those are reused.
	for _, tc := range []struct {
		c    Container
		want string
	}{
		{Container{}, "metaflow-r-rocker_r-ver_4_4_1-1c-4000m-0g-a7c9e9783a0b"},
		{Container{JobRole: "arn:aws:iam::1:role/x"}, "metaflow-r-rocker_r-ver_4_4_1-1c-4000m-0g-6344659cd83d"},
	} {
		if got := jobDefName(img, r, tc.c); got != tc.want {
			t.Errorf("jobDefName(%+v) = %q, want the earlier name %q", tc.c, got, tc.want)
		}
	}
	const role = "arn:aws:iam::1:role/x"
	variants := map[string]Container{
		"nothing":                {},
		"job role":               {JobRole: role},
		"execution role":         {ExecutionRole: role},
		"both roles":             {JobRole: role, ExecutionRole: role},
		"other execution role":   {JobRole: role, ExecutionRole: role + "2"},
		"shared memory":          {SharedMemoryMiB: 256},
		"more shared memory":     {SharedMemoryMiB: 257},
		"max swap 0":             {MaxSwapMiB: intp(0)},
		"max swap 512":           {MaxSwapMiB: intp(512)},
		"swappiness 0":           {Swappiness: intp(0)},
		"swappiness 10":          {Swappiness: intp(10)},
		"swap 512, swappiness 0": {MaxSwapMiB: intp(512), Swappiness: intp(0)},
		"swap 0, swappiness 100": {MaxSwapMiB: intp(0), Swappiness: intp(100)},
		"all":                    {JobRole: role, ExecutionRole: role, SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(10)},
		"all, swappiness 11":     {JobRole: role, ExecutionRole: role, SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(11)},
	}
	seen := map[string]string{}
	for what, c := range variants {
		n := jobDefName(img, r, c)
		if !batchName.MatchString(n) {
			t.Errorf("%s: name %q is not a valid Batch name", what, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share the job definition name %q", what, other, n)
		}
		seen[n] = what
		// The same contents always get the same name (reuse across processes).
		again := c
		if c.MaxSwapMiB != nil {
			again.MaxSwapMiB = intp(*c.MaxSwapMiB)
		}
		if n2 := jobDefName(img, r, again); n2 != n {
			t.Errorf("%s: name %q then %q for the same contents", what, n, n2)
		}
	}
	// Resources and image still count with a container.
	c := variants["all"]
	if jobDefName(img, r, c) == jobDefName(img, Resources{VCPUs: 1, MemoryMB: 4001}, c) ||
		jobDefName(img, r, c) == jobDefName(img+"x", r, c) {
		t.Error("image or memory left out of the name of a definition with a container")
	}
}

func TestContainerLinuxParameters(t *testing.T) {
	if lp := (Container{JobRole: "r", ExecutionRole: "e"}).linuxParameters(); lp != nil {
		t.Errorf("no Linux parameters given, got %+v", lp)
	}
	lp := Container{SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(10)}.linuxParameters()
	if lp == nil || aws.ToInt32(lp.SharedMemorySize) != 256 || aws.ToInt32(lp.MaxSwap) != 512 || aws.ToInt32(lp.Swappiness) != 10 {
		t.Errorf("all given: %+v", lp)
	}
	// Each value is set on its own, as Metaflow does; 0 is a value.
	lp = Container{Swappiness: intp(0)}.linuxParameters()
	if lp == nil || lp.Swappiness == nil || *lp.Swappiness != 0 || lp.MaxSwap != nil || lp.SharedMemorySize != nil {
		t.Errorf("swappiness 0 alone: %+v", lp)
	}
	lp = Container{MaxSwapMiB: intp(0)}.linuxParameters()
	if lp == nil || lp.MaxSwap == nil || *lp.MaxSwap != 0 || lp.Swappiness != nil {
		t.Errorf("max swap 0 alone: %+v", lp)
	}
	for _, bad := range []Container{{SharedMemoryMiB: -1}, {MaxSwapMiB: intp(-1)}, {Swappiness: intp(101)}, {Swappiness: intp(-1)},
		{SharedMemoryMiB: 1 << 31}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// The executor reads the roles and Linux parameters from the step's batch
// decorator, shared_memory also from resources (the larger wins).
func TestStepContainer(t *testing.T) {
	e := &Executor{}
	deco := func(batch, resources map[string]string) *scheduler.Launch {
		l := &scheduler.Launch{Decorators: map[string]graph.Decorator{}}
		if batch != nil {
			l.Decorators["batch"] = graph.Decorator{Name: "batch", Args: batch}
		}
		if resources != nil {
			l.Decorators["resources"] = graph.Decorator{Name: "resources", Args: resources}
		}
		return l
	}
	tests := []struct {
		name             string
		batch, resources map[string]string
		want             Container
		err              string
	}{
		{"none", nil, nil, Container{}, ""},
		{"batch without them", map[string]string{"cpu": "2"}, map[string]string{"memory": "9000"}, Container{}, ""},
		{"all", map[string]string{"iam_role": "arn:aws:iam::123456789012:role/step-role", "execution_role": "arn:aws:iam::123456789012:role/exec",
			"shared_memory": "256", "max_swap": "512", "swappiness": "10"}, nil,
			Container{JobRole: "arn:aws:iam::123456789012:role/step-role", ExecutionRole: "arn:aws:iam::123456789012:role/exec",
				SharedMemoryMiB: 256, MaxSwapMiB: intp(512), Swappiness: intp(10)}, ""},
		{"resources larger", map[string]string{"shared_memory": "256"}, map[string]string{"shared_memory": "300.2"}, Container{SharedMemoryMiB: 301}, ""},
		{"batch larger", map[string]string{"shared_memory": "512"}, map[string]string{"shared_memory": "256"}, Container{SharedMemoryMiB: 512}, ""},
		{"resources only (--with batch)", nil, map[string]string{"shared_memory": "128"}, Container{SharedMemoryMiB: 128}, ""},
		{"zeros are values", map[string]string{"max_swap": "0", "swappiness": "0"}, nil, Container{MaxSwapMiB: intp(0), Swappiness: intp(0)}, ""},
		{"swappiness alone", map[string]string{"swappiness": "60"}, nil, Container{Swappiness: intp(60)}, ""},
		{"bad swappiness", map[string]string{"swappiness": "101"}, nil, Container{}, "swappiness must be a whole number from 0 to 100, got 101"},
		{"bad max_swap", map[string]string{"max_swap": "1.5"}, nil, Container{}, `batch(max_swap = "1.5"): must be a whole number`},
		{"bad shared_memory", nil, map[string]string{"shared_memory": "0"}, Container{}, `resources(shared_memory = "0"): must be a positive number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.container(deco(tc.batch, tc.resources))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if jobDefName("i", Resources{}, got) != jobDefName("i", Resources{}, tc.want) ||
				got.JobRole != tc.want.JobRole || got.ExecutionRole != tc.want.ExecutionRole || got.SharedMemoryMiB != tc.want.SharedMemoryMiB ||
				(got.MaxSwapMiB == nil) != (tc.want.MaxSwapMiB == nil) || (got.Swappiness == nil) != (tc.want.Swappiness == nil) {
				t.Errorf("container %+v (swap %v, swappiness %v), want %+v (swap %v, swappiness %v)",
					got, intOrNil(got.MaxSwapMiB), intOrNil(got.Swappiness), tc.want, intOrNil(tc.want.MaxSwapMiB), intOrNil(tc.want.Swappiness))
			}
		})
	}
	// Preflight refuses a bad combination before the run, as a step that
	// can never run.
	err := e.Preflight(context.Background(), "start", deco(map[string]string{"swappiness": "101", "image": "x"}, nil).Decorators, "")
	if err == nil || !strings.Contains(err.Error(), "swappiness") {
		t.Errorf("Preflight: %v", err)
	}
}

// Submit refuses bad values and a fixed job definition with a container
// before any API call.
func TestSubmitChecksTheContainer(t *testing.T) {
	c := NewFromConfig(aws.Config{Region: "us-east-1"}, Options{})
	l := Labels{Flow: "F", User: "u", Run: "1", Step: "s", Task: "1"}
	for _, tc := range []struct {
		spec JobSpec
		want string
	}{
		{JobSpec{Queue: "q", Image: "i", Labels: l, Container: Container{Swappiness: intp(101)}}, "swappiness must be a whole number from 0 to 100"},
		{JobSpec{Queue: "q", Image: "i", Labels: l, Container: Container{MaxSwapMiB: intp(-1)}}, "max_swap must be"},
		{JobSpec{Queue: "q", JobDefinition: "jd:1", Labels: l, Container: Container{JobRole: "arn:aws:iam::1:role/x"}}, "job definition jd:1 fixes the job's IAM roles and Linux parameters"},
	} {
		_, err := c.Submit(context.Background(), tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Submit(%+v) = %v, want an error containing %q", tc.spec.Container, err, tc.want)
		}
	}
	if calls := c.Calls(); len(calls) != 0 {
		t.Errorf("refused submissions made calls %v", calls)
	}
}

// METAFLOW_ECS_FARGATE_EXECUTION_ROLE comes from the environment, else
// from Metaflow's config file.
func TestConfigExecutionRole(t *testing.T) {
	home := t.TempDir()
	t.Setenv("METAFLOW_HOME", home)
	unset(t, "METAFLOW_PROFILE", "METAFLOW_ECS_FARGATE_EXECUTION_ROLE", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE")
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "q")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://b/p")
	if c, err := ConfigFromEnv(); err != nil || c.ExecutionRole != "" {
		t.Fatalf("unset: %+v, %v", c, err)
	}
	cfg := `{"METAFLOW_ECS_FARGATE_EXECUTION_ROLE": "arn:aws:iam::1:role/file-exec", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": "arn:aws:iam::1:role/file-job"}`
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := ConfigFromEnv(); err != nil || c.ExecutionRole != "arn:aws:iam::1:role/file-exec" || c.JobRole != "arn:aws:iam::1:role/file-job" {
		t.Fatalf("from the file: %+v, %v", c, err)
	}
	t.Setenv("METAFLOW_ECS_FARGATE_EXECUTION_ROLE", "arn:aws:iam::1:role/env-exec")
	if c, err := ConfigFromEnv(); err != nil || c.ExecutionRole != "arn:aws:iam::1:role/env-exec" {
		t.Fatalf("the environment must win: %+v, %v", c, err)
	}
}
