package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

func TestMachineFromEnvironment(t *testing.T) {
	base := Machine{CPUs: 8, MemoryMB: 16000, GPUs: []string{"5"}}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    Machine
		wantErr string
	}{
		{"nothing set keeps what was detected", nil, base, ""},
		{"all three", map[string]string{EnvLocalCPUs: "2.5", EnvLocalMemory: "1000", EnvLocalGPUs: "2"},
			Machine{CPUs: 2.5, MemoryMB: 1000, GPUs: []string{"0", "1"}}, ""},
		{"no GPUs", map[string]string{EnvLocalGPUs: "0"}, Machine{CPUs: 8, MemoryMB: 16000, GPUs: []string{}}, ""},
		{"cpus not a number", map[string]string{EnvLocalCPUs: "many"}, Machine{},
			`METAFLOW_LOCAL_CPUS="many" is not a number of CPUs: give one above 0 (e.g. 4) or unset it`},
		{"cpus zero", map[string]string{EnvLocalCPUs: "0"}, Machine{},
			`METAFLOW_LOCAL_CPUS="0" is not a number of CPUs: give one above 0 (e.g. 4) or unset it`},
		{"memory with a unit", map[string]string{EnvLocalMemory: "16GB"}, Machine{},
			`METAFLOW_LOCAL_MEMORY="16GB" is not an amount of memory in MB: give one above 0 (e.g. 16000) or unset it`},
		{"memory NaN", map[string]string{EnvLocalMemory: "NaN"}, Machine{},
			`METAFLOW_LOCAL_MEMORY="NaN" is not an amount of memory in MB: give one above 0 (e.g. 16000) or unset it`},
		{"gpus negative", map[string]string{EnvLocalGPUs: "-1"}, Machine{},
			`METAFLOW_LOCAL_GPUS="-1" is not a number of GPUs: give a whole number of 0 or more or unset it`},
		{"gpus fractional", map[string]string{EnvLocalGPUs: "1.5"}, Machine{},
			`METAFLOW_LOCAL_GPUS="1.5" is not a number of GPUs: give a whole number of 0 or more or unset it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := machineFrom(func(k string) string { return tc.env[k] }, base)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errs.ErrInvalid) {
					t.Fatalf("err = %v, want the invalid %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// A fake /proc and /sys/fs/cgroup tree.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range files {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetectMachine(t *testing.T) {
	meminfo := "MemTotal:       16384000 kB\nMemFree:         1000000 kB\n" // 16000 MiB
	for _, tc := range []struct {
		name  string
		files map[string]string
		cuda  string
		set   bool
		want  Machine
	}{
		{"no cgroup limits, no GPU", map[string]string{
			"proc/meminfo": meminfo, "proc/self/cgroup": "0::/\n",
			"sys/fs/cgroup/cpu.max": "max 100000\n", "sys/fs/cgroup/memory.max": "max\n",
		}, "", false, Machine{CPUs: 4, MemoryMB: 16000}},
		{"cgroup v2 limits on a parent of the process's group", map[string]string{
			"proc/meminfo": meminfo, "proc/self/cgroup": "0::/user.slice/job/task\n",
			"sys/fs/cgroup/user.slice/job/cpu.max":             "150000 100000\n",
			"sys/fs/cgroup/user.slice/job/memory.max":          "2147483648\n",
			"sys/fs/cgroup/user.slice/job/task/memory.max":     "max\n",
			"proc/driver/nvidia/gpus/0000:01:00.0/information": "Model: x\n",
			"proc/driver/nvidia/gpus/0000:02:00.0/information": "Model: x\n",
		}, "", false, Machine{CPUs: 1.5, MemoryMB: 2048, GPUs: []string{"0", "1"}}},
		{"cgroup v1 (hybrid): memory limit of the group, no cpu quota", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                 "9223372036854771712\n",
			"sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "1073741824\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":                 "-1\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us":                "100000\n",
		}, "", false, Machine{CPUs: 4, MemoryMB: 1024}},
		{"cgroup v1 cpu quota", map[string]string{
			"proc/meminfo": meminfo, "proc/self/cgroup": "3:cpu:/docker/x\n",
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "200000\n",
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
		}, "", false, Machine{CPUs: 2, MemoryMB: 16000}},
		{"a quota above the CPUs does not raise them", map[string]string{
			"proc/meminfo": meminfo, "proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "800000 100000\n",
		}, "", false, Machine{CPUs: 4, MemoryMB: 16000}},
		{"CUDA_VISIBLE_DEVICES names the GPUs", map[string]string{
			"proc/meminfo": meminfo, "proc/driver/nvidia/gpus/a/information": "x",
		}, "2, 3", true, Machine{CPUs: 4, MemoryMB: 16000, GPUs: []string{"2", "3"}}},
		{"an empty CUDA_VISIBLE_DEVICES hides them", map[string]string{
			"proc/meminfo": meminfo, "proc/driver/nvidia/gpus/a/information": "x",
		}, "", true, Machine{CPUs: 4, MemoryMB: 16000}},
		{"nothing readable", map[string]string{}, "", false, Machine{CPUs: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DetectMachine(fakeRoot(t, tc.files), 4, tc.cuda, tc.set)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// This machine: something sensible.
	m := DetectMachine("/", 2, "", false)
	if m.CPUs <= 0 || m.CPUs > 2 || m.MemoryMB <= 0 {
		t.Errorf("this machine: %+v", m)
	}
}

func TestStepRequest(t *testing.T) {
	d := func(name string, kv ...string) graph.Decorator {
		args := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			args[kv[i]] = kv[i+1]
		}
		return graph.Decorator{Name: name, Args: args}
	}
	for _, tc := range []struct {
		name  string
		decos []graph.Decorator
		want  ResourceRequest
		asked bool
	}{
		{"no decorator asks for nothing", []graph.Decorator{d("retry", "times", "2")}, ResourceRequest{}, false},
		{"resources with Metaflow's defaults", []graph.Decorator{d("resources", "gpu", "1")}, ResourceRequest{CPU: 1, MemoryMB: 4000, GPU: 1}, true},
		{"resources as given", []graph.Decorator{d("resources", "cpu", "0.5", "memory", "60000")}, ResourceRequest{CPU: 0.5, MemoryMB: 60000}, true},
		{"the larger of resources and batch", []graph.Decorator{d("resources", "cpu", "4", "memory", "1000"), d("batch", "cpu", "2", "memory", "8000", "gpu", "2")},
			ResourceRequest{CPU: 4, MemoryMB: 8000, GPU: 2}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decos := map[string]graph.Decorator{}
			for _, x := range tc.decos {
				decos[x.Name] = x
			}
			got, asked := StepRequest(decos)
			if got != tc.want || asked != tc.asked {
				t.Errorf("got %+v, %v; want %+v, %v", got, asked, tc.want, tc.asked)
			}
		})
	}
}

// The pool's choices, one pick after some tasks took their share.
func TestMachinePoolPick(t *testing.T) {
	m := Machine{CPUs: 4, MemoryMB: 8000, GPUs: []string{"0", "1"}}
	req := func(cpu, mem float64, gpu int) taskDemand {
		return taskDemand{req: ResourceRequest{CPU: cpu, MemoryMB: mem, GPU: gpu}, local: true}
	}
	plain := taskDemand{local: true} // a step without resources
	remote := taskDemand{}
	alone := taskDemand{req: ResourceRequest{CPU: 1, MemoryMB: 60000}, local: true, alone: true}
	gpu1 := req(1, 1000, 1)
	type task struct {
		step string
		d    taskDemand
	}
	for _, tc := range []struct {
		name     string
		running  []taskDemand
		queue    []task
		want     int
		wantGPUs []string
	}{
		{"an empty machine takes the first", nil, []task{{"a", req(4, 8000, 2)}}, 0, []string{"0", "1"}},
		{"memory full: it waits", []taskDemand{req(1, 5000, 0)}, []task{{"a", req(1, 4000, 0)}}, -1, nil},
		{"cpus full: it waits", []taskDemand{req(3.5, 10, 0)}, []task{{"a", req(1, 10, 0)}}, -1, nil},
		{"fractional cpus add up", []taskDemand{req(0.1, 1, 0), req(0.2, 1, 0)}, []task{{"a", req(3.7, 10, 0)}}, 0, []string{}},
		{"GPUs taken: it waits", []taskDemand{gpu1, gpu1}, []task{{"a", gpu1}}, -1, nil},
		{"a GPU left: it gets that one", []taskDemand{gpu1}, []task{{"a", gpu1}}, 0, []string{"1"}},
		{"a step without resources always fits", []taskDemand{req(4, 8000, 2)}, []task{{"a", plain}}, 0, nil},
		{"--max-workers aside, plain tasks pass one that waits", []taskDemand{req(3, 10, 0)}, []task{{"a", req(2, 10, 0)}, {"b", plain}}, 1, nil},
		{"a task that asks for none of what the waiting one lacks passes it", []taskDemand{gpu1, gpu1},
			[]task{{"g", gpu1}, {"c", req(1, 1000, 0)}}, 1, []string{}},
		{"a task that asks for what the waiting one lacks does not", []taskDemand{req(3, 10, 0)},
			[]task{{"a", req(2, 10, 0)}, {"b", req(1, 10, 0)}}, -1, nil},
		{"the same step is skipped, the next one is looked at", []taskDemand{gpu1, gpu1},
			[]task{{"g", gpu1}, {"g", gpu1}, {"c", req(1, 10, 0)}}, 2, []string{}},
		{"an oversize task waits for the machine to empty", []taskDemand{plain}, []task{{"big", alone}}, -1, nil},
		{"nothing local passes a waiting oversize task", []taskDemand{plain}, []task{{"big", alone}, {"b", plain}}, -1, nil},
		{"but remote tasks do", []taskDemand{plain}, []task{{"big", alone}, {"b", plain}, {"r", remote}}, 2, nil},
		{"an oversize task runs on an empty machine, with every GPU", []taskDemand{remote},
			[]task{{"big", taskDemand{req: ResourceRequest{CPU: 1, MemoryMB: 10, GPU: 3}, local: true, alone: true}}}, 0, []string{"0", "1"}},
		{"nothing local starts beside an oversize task", []taskDemand{alone}, []task{{"b", plain}, {"r", remote}}, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newMachinePool(m)
			for _, d := range tc.running {
				p.take(d)
			}
			got, g := p.pick(len(tc.queue), func(i int) (taskDemand, string) { return tc.queue[i].d, tc.queue[i].step })
			if got != tc.want {
				t.Fatalf("picked %d, want %d", got, tc.want)
			}
			if got >= 0 && tc.wantGPUs != nil && !reflect.DeepEqual(append([]string{}, g.gpus...), tc.wantGPUs) {
				t.Errorf("GPUs handed out: %q, want %q", g.gpus, tc.wantGPUs)
			}
		})
	}
}

// What is taken is given back: GPUs return lowest first, sums to zero.
func TestMachinePoolGivesBack(t *testing.T) {
	p := newMachinePool(Machine{CPUs: 1, MemoryMB: 100, GPUs: []string{"0", "1", "2"}})
	d := taskDemand{req: ResourceRequest{CPU: 0.1, MemoryMB: 10, GPU: 1}, local: true}
	var gs []*machineGrant
	for i := 0; i < 3; i++ {
		gs = append(gs, p.take(d))
	}
	if len(p.free) != 0 {
		t.Fatal("not all GPUs taken")
	}
	p.give(gs[2])
	p.give(gs[0])
	if got := strings.Join(p.free, ","); got != "0,2" {
		t.Errorf("free GPUs %q, want 0,2", got)
	}
	p.give(gs[1])
	if p.cpu != 0 || p.mem != 0 || p.local != 0 || strings.Join(p.free, ",") != "0,1,2" {
		t.Errorf("after all were given back: %+v", p)
	}
}

// resGraph: start (a foreach) -> work (with decos) -> join -> end.
func resGraph(t *testing.T, decos ...graph.Decorator) *graph.Graph {
	t.Helper()
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"work"}, Foreach: "params"},
		{Name: "work", Next: []string{"join"}, Decorators: decos},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// resExec runs tasks like fakeExec and checks, as they run, that what the
// running tasks asked for (req, by step) fits the machine, that no two
// hold the same GPU, and that an oversize step (alone) runs by itself.
// The first `wait` tasks of step work wait until that many run together
// (so a run that never lets them fails with a timeout, not by luck).
type resExec struct {
	*fakeExec
	m     Machine
	req   map[string]ResourceRequest
	alone string
	wait  int

	mu        sync.Mutex
	cpu, mem  float64
	running   map[string]int // by step
	gpus      map[string]bool
	peakWork  int
	cuda      map[string][]string // CUDA_VISIBLE_DEVICES seen, by step ("-": not set)
	problems  []string
	reached   chan struct{}
	reachOnce sync.Once
}

func newResExec(m Machine, req map[string]ResourceRequest) *resExec {
	return &resExec{fakeExec: &fakeExec{steps: map[string]stepFunc{"start": splits(8)}}, m: m, req: req,
		running: map[string]int{}, gpus: map[string]bool{}, cuda: map[string][]string{}, reached: make(chan struct{})}
}

func (e *resExec) Run(ctx context.Context, l *Launch) (int, error) {
	step := l.Spec.Step
	q := e.req[step]
	ids, set := l.Env["CUDA_VISIBLE_DEVICES"]
	var held []string
	e.mu.Lock()
	others := 0
	for _, n := range e.running {
		others += n
	}
	if step == e.alone && others > 0 {
		e.problems = append(e.problems, fmt.Sprintf("%s started beside %v", step, e.running))
	}
	if e.alone != "" && e.running[e.alone] > 0 {
		e.problems = append(e.problems, fmt.Sprintf("%s started beside %s", step, e.alone))
	}
	e.running[step]++
	e.cpu += q.CPU
	e.mem += q.MemoryMB
	if step != e.alone && (e.cpu > e.m.CPUs+sizeEps || e.mem > e.m.MemoryMB+sizeEps) {
		e.problems = append(e.problems, fmt.Sprintf("%s started: %v CPUs, %v MB in use", step, e.cpu, e.mem))
	}
	if !set {
		e.cuda[step] = append(e.cuda[step], "-")
	} else {
		e.cuda[step] = append(e.cuda[step], ids)
		for _, id := range strings.Split(ids, ",") {
			if e.gpus[id] {
				e.problems = append(e.problems, fmt.Sprintf("GPU %s handed to two tasks", id))
			}
			e.gpus[id] = true
			held = append(held, id)
		}
	}
	if step == "work" {
		e.peakWork = max(e.peakWork, e.running["work"])
		if e.running["work"] >= e.wait {
			e.reachOnce.Do(func() { close(e.reached) })
		}
	}
	e.mu.Unlock()
	if step == "work" && e.wait > 0 {
		select {
		case <-e.reached:
		case <-time.After(10 * time.Second):
			e.mu.Lock()
			e.problems = append(e.problems, fmt.Sprintf("%d tasks of work never ran together", e.wait))
			e.mu.Unlock()
		}
	}
	code, err := e.fakeExec.Run(ctx, l)
	e.mu.Lock()
	e.running[step]--
	e.cpu -= q.CPU
	e.mem -= q.MemoryMB
	for _, id := range held {
		delete(e.gpus, id)
	}
	e.mu.Unlock()
	return code, err
}

func deco(name string, kv ...string) graph.Decorator {
	args := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		args[kv[i]] = kv[i+1]
	}
	return graph.Decorator{Name: name, Args: args}
}

// Tasks run together only while their requests fit the machine, with
// --max-workers still the bound; steps without resources are not held
// back; an oversize step runs alone, after one warning; GPUs are handed
// out one task at a time in CUDA_VISIBLE_DEVICES.
func TestResourcesBoundLocalConcurrency(t *testing.T) {
	small := Machine{CPUs: 8, MemoryMB: 8000}
	warning := "Warning: step 'work' asks for 60000 MB of memory; this machine has 8000 MB. Its tasks will run here " +
		"one at a time with no other task beside them; to give the step its size, run it on AWS Batch with " +
		"--with batch (run(batch = TRUE) in R)."
	for _, tc := range []struct {
		name       string
		m          Machine
		decos      []graph.Decorator
		req        ResourceRequest // work's, as the executor counts it
		maxWorkers int
		alone      bool
		wait       int // tasks of work that must run together
		peak       int // at most this many together
		cuda       []string
		warnings   []string
	}{
		{"memory: two of 3000 MB fit in 8000", small, []graph.Decorator{deco("resources", "memory", "3000")},
			ResourceRequest{CPU: 1, MemoryMB: 3000}, 16, false, 2, 2, nil, nil},
		{"cpus: two of 3 fit in 8", small, []graph.Decorator{deco("resources", "cpu", "3", "memory", "10")},
			ResourceRequest{CPU: 3, MemoryMB: 10}, 16, false, 2, 2, nil, nil},
		{"--with resources counts too", small, nil, ResourceRequest{CPU: 1, MemoryMB: 4000}, 16, false, 2, 2, nil, nil},
		{"--max-workers still bounds", small, []graph.Decorator{deco("resources", "memory", "10")},
			ResourceRequest{CPU: 1, MemoryMB: 10}, 3, false, 3, 3, nil, nil},
		{"no resources: only --max-workers, even on a tiny machine", Machine{CPUs: 1, MemoryMB: 100}, nil,
			ResourceRequest{}, 5, false, 5, 5, nil, nil},
		{"oversize: alone, one warning", small, []graph.Decorator{deco("resources", "memory", "60000")},
			ResourceRequest{}, 16, true, 0, 1, nil, []string{warning}},
		{"GPUs: one task per device", Machine{CPUs: 8, MemoryMB: 8000, GPUs: []string{"0", "1"}},
			[]graph.Decorator{deco("resources", "gpu", "1", "memory", "10")}, ResourceRequest{CPU: 1, MemoryMB: 10}, 16, false, 2, 2,
			[]string{"0", "1"}, nil},
		{"an environment decorator's CUDA_VISIBLE_DEVICES wins", Machine{CPUs: 8, MemoryMB: 8000, GPUs: []string{"0"}},
			[]graph.Decorator{deco("resources", "gpu", "1", "memory", "10"), deco("environment", "CUDA_VISIBLE_DEVICES", "7")},
			ResourceRequest{CPU: 1, MemoryMB: 10}, 16, false, 1, 1, []string{"7"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := newResExec(tc.m, map[string]ResourceRequest{"work": tc.req})
			ex.wait = tc.wait
			if tc.alone {
				ex.alone = "work"
			}
			opts := Options{MaxWorkers: tc.maxWorkers}
			if tc.decos == nil && tc.req != (ResourceRequest{}) {
				opts.With = []graph.Decorator{deco("resources")}
			}
			r, _ := newRun(t, resGraph(t, tc.decos...), ex, opts)
			m := tc.m
			r.Machine = &m
			var lines []string
			r.Emit = func(e Event) { lines = append(lines, e.Line) }
			if err := execute(t, r); err != nil {
				t.Fatal(err)
			}
			for _, p := range ex.problems {
				t.Error(p)
			}
			if ex.peakWork > tc.peak {
				t.Errorf("%d tasks of work ran together, want at most %d", ex.peakWork, tc.peak)
			}
			if n := len(ex.stepCalls("work")); n != 8 {
				t.Errorf("%d tasks of work ran, want 8", n)
			}
			var warnings []string
			starting := -1
			for i, l := range lines {
				if strings.Contains(l, "Warning: step") {
					warnings = append(warnings, l[strings.Index(l, "Warning"):])
					if starting >= 0 {
						t.Errorf("warning after the run started: %q", l)
					}
				}
				if strings.Contains(l, "Workflow starting") {
					starting = i
				}
			}
			if !reflect.DeepEqual(warnings, tc.warnings) {
				t.Errorf("warnings:\n%q\nwant\n%q", warnings, tc.warnings)
			}
			// CUDA_VISIBLE_DEVICES: the GPUs handed out to work, never set
			// for the steps that asked for none.
			seen := map[string]bool{}
			for _, ids := range ex.cuda["work"] {
				seen[ids] = true
			}
			if tc.cuda == nil && !reflect.DeepEqual(seen, map[string]bool{"-": true}) {
				t.Errorf("work saw CUDA_VISIBLE_DEVICES %v, want it unset", ex.cuda["work"])
			}
			for _, id := range tc.cuda {
				if !seen[id] {
					t.Errorf("work never got GPU %s: saw %v", id, ex.cuda["work"])
				}
			}
			if tc.cuda != nil && len(seen) != len(tc.cuda) {
				t.Errorf("work saw CUDA_VISIBLE_DEVICES %v, want only %v", ex.cuda["work"], tc.cuda)
			}
			for _, step := range []string{"start", "join", "end"} {
				if !reflect.DeepEqual(ex.cuda[step], []string{"-"}) {
					t.Errorf("%s saw CUDA_VISIBLE_DEVICES %v, want it unset", step, ex.cuda[step])
				}
			}
		})
	}
}

// An oversize step among others: it waits for every local task to end and
// none starts while it runs; a step on a remote executor is not counted
// (no warning, not held back); the warning names every resource short.
func TestOversizeStepRunsAlone(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"big", "small", "far"}},
		{Name: "big", Next: []string{"join"}, Decorators: []graph.Decorator{deco("resources", "cpu", "16", "memory", "60000", "gpu", "2")}},
		{Name: "small", Next: []string{"join"}},
		{Name: "far", Next: []string{"join"}, Decorators: []graph.Decorator{deco(fakeCloud), deco("resources", "memory", "90000")}},
		{Name: "join", Next: []string{"end"}, Join: true},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := Machine{CPUs: 2, MemoryMB: 1000, GPUs: []string{"0"}}
	ex := newResExec(m, nil)
	ex.steps = nil
	ex.alone = "big"
	remote := &fakeExec{}
	r, _ := newRun(t, g, ex, Options{})
	r.Executors = registry(t, map[string]Plugin{fakeCloud: Ready("Fake Cloud", remote)})
	r.Machine = &m
	var lines []string
	r.Emit = func(e Event) { lines = append(lines, e.Line) }
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	for _, p := range ex.problems {
		t.Error(p)
	}
	var warnings []string
	for _, l := range lines {
		if i := strings.Index(l, "Warning: step"); i >= 0 {
			warnings = append(warnings, l[i:])
		}
	}
	want := []string{"Warning: step 'big' asks for 16 CPUs, 60000 MB of memory and 2 GPUs; this machine has 2 CPUs, " +
		"1000 MB and 1 GPU. Its tasks will run here one at a time with no other task beside them; to give the step its size, " +
		"run it on AWS Batch with --with batch (run(batch = TRUE) in R)."}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings:\n%q\nwant\n%q", warnings, want)
	}
	if got := ex.cuda["big"]; !reflect.DeepEqual(got, []string{"0"}) {
		t.Errorf("big saw CUDA_VISIBLE_DEVICES %v, want the machine's one GPU", got)
	}
	if len(remote.stepCalls("far")) != 1 || len(ex.stepCalls("big")) != 1 || len(ex.stepCalls("small")) != 1 {
		t.Errorf("far ran %d times remotely, big %d and small %d locally", len(remote.stepCalls("far")),
			len(ex.stepCalls("big")), len(ex.stepCalls("small")))
	}
}

// A bad METAFLOW_LOCAL_* setting fails the run before anything is written.
func TestBadMachineSettingWritesNothing(t *testing.T) {
	t.Setenv(EnvLocalMemory, "lots")
	r, store := newRun(t, resGraph(t), &fakeExec{}, Options{})
	err := r.Prepare(bg)
	if err == nil || !strings.HasPrefix(err.Error(), `METAFLOW_LOCAL_MEMORY="lots" is not an amount of memory in MB`) || !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("Prepare = %v", err)
	}
	if runs, _ := store.ListRuns(bg, "F"); len(runs) != 0 {
		t.Errorf("runs written: %v", runs)
	}
}

// BenchmarkForeach200Resources is BenchmarkForeach200 with the splits
// asking for resources (two fit at a time): the pool's cost per task.
func BenchmarkForeach200Resources(b *testing.B) {
	t := &testing.T{}
	g := resGraph(t, deco("resources", "memory", "4000"))
	for i := 0; i < b.N; i++ {
		ex := &fakeExec{steps: map[string]stepFunc{"start": splits(200)}, fast: true}
		store := datastore.NewLocal(filepath.Join(b.TempDir(), ".metaflow"))
		r := &Run{Graph: g, Store: store, Exec: ex, Code: []byte("code"), Machine: &Machine{CPUs: 2, MemoryMB: 8000},
			Opts: Options{MaxWorkers: 4, MaxNumSplits: 200}}
		if err := r.Prepare(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := r.Execute(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*203), "us/task")
}

// BenchmarkPickFull10000: a pick when the machine is full and 10,000 splits
// wait (the worst scan: one per task that ends).
func BenchmarkPickFull10000(b *testing.B) {
	d := taskDemand{req: ResourceRequest{CPU: 1, MemoryMB: 4000}, local: true}
	p := newMachinePool(Machine{CPUs: 2, MemoryMB: 8000})
	p.take(d)
	p.take(d)
	queue := make([]*pending, 10000)
	for i := range queue {
		queue[i] = &pending{step: "work"}
	}
	demands := map[string]taskDemand{"work": d}
	at := func(i int) (taskDemand, string) { return demands[queue[i].step], queue[i].step }
	for i := 0; i < b.N; i++ {
		if j, _ := p.pick(len(queue), at); j >= 0 {
			b.Fatal("picked on a full machine")
		}
	}
}
