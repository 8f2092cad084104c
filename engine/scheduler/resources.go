package scheduler

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// Resources locally: a step with a resources (or batch) decorator asks for
// its cpu, memory and gpu (Metaflow's defaults 1, 4000 MB, 0 for the ones
// it does not give); its tasks run together with others only while what
// they ask for fits the machine, and --max-workers still bounds them all.
// A step without the decorators asks for nothing (only --max-workers bounds
// it), so ordinary flows run as before. A step asking for more than the
// machine has runs alone, after a warning. Steps an executor decorator
// sends elsewhere (Batch) use nothing of the machine.

// The environment variables that set the machine's size the local scheduler
// hands out, instead of what it detects (tests use small sizes; a user may
// keep part of a machine for other work).
const (
	EnvLocalCPUs   = "METAFLOW_LOCAL_CPUS"   // a number > 0
	EnvLocalMemory = "METAFLOW_LOCAL_MEMORY" // MB (MiB, as Batch counts them), > 0
	EnvLocalGPUs   = "METAFLOW_LOCAL_GPUS"   // a whole number >= 0; ids 0..n-1
)

// Machine is the size of this machine as the local scheduler hands it out.
type Machine struct {
	CPUs     float64 // a cgroup quota may make it fractional
	MemoryMB float64 // 0: not known (memory does not bound tasks)
	// GPUs are the ids of the devices, handed to tasks in
	// CUDA_VISIBLE_DEVICES, one task per device at a time.
	GPUs []string
}

// ResourceRequest is what a task asks of the machine.
type ResourceRequest struct {
	CPU      float64
	MemoryMB float64
	GPU      int
}

// Metaflow's defaults for the values a resources or batch decorator omits.
const (
	defaultCPU      = 1
	defaultMemoryMB = 4000
)

// StepRequest is what a step's merged decorators (its own and --with) ask
// for, and whether they ask at all: the larger of the resources and batch
// decorators' values, as on Batch.
func StepRequest(decos map[string]graph.Decorator) (ResourceRequest, bool) {
	var q ResourceRequest
	asked := false
	num := func(d graph.Decorator, k string, def float64) float64 {
		if f, err := strconv.ParseFloat(d.Args[k], 64); err == nil && f >= 0 && !math.IsInf(f, 0) {
			return f
		}
		return def
	}
	for _, name := range []string{"resources", "batch"} {
		d, ok := decos[name]
		if !ok {
			continue
		}
		asked = true
		q.CPU = max(q.CPU, num(d, "cpu", defaultCPU))
		q.MemoryMB = max(q.MemoryMB, num(d, "memory", defaultMemoryMB))
		q.GPU = max(q.GPU, int(math.Ceil(num(d, "gpu", 0))))
	}
	return q, asked
}

// taskDemand is what one task takes from the machine while it runs. The zero
// value takes nothing (a task on a remote executor, a cloned task).
type taskDemand struct {
	req ResourceRequest
	// local: the task runs on this machine (an oversize task waits for
	// every local task to end).
	local bool
	// alone: the request does not fit the machine at all; the task runs
	// when no other local task does, and none starts while it runs.
	alone bool
}

// exceeds names what q asks for beyond m, and what m has of it (for the
// warning); none when q fits.
func (m Machine) exceeds(q ResourceRequest) (asks, has []string) {
	if q.CPU > m.CPUs+sizeEps {
		asks = append(asks, fmtCount(q.CPU, "CPU"))
		has = append(has, fmtCount(m.CPUs, "CPU"))
	}
	if m.MemoryMB > 0 && q.MemoryMB > m.MemoryMB+sizeEps {
		asks = append(asks, fmtNum(q.MemoryMB)+" MB of memory")
		has = append(has, fmtNum(m.MemoryMB)+" MB")
	}
	if q.GPU > len(m.GPUs) {
		asks = append(asks, fmtCount(float64(q.GPU), "GPU"))
		if len(m.GPUs) == 0 {
			has = append(has, "no GPU")
		} else {
			has = append(has, fmtCount(float64(len(m.GPUs)), "GPU"))
		}
	}
	return asks, has
}

// sizeEps absorbs the rounding of fractional sums.
const sizeEps = 1e-9

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func fmtCount(f float64, unit string) string {
	if f == 1 {
		return "1 " + unit
	}
	return fmtNum(f) + " " + unit + "s"
}

// oversizeWarning is the line printed before the run starts for a step
// that asks for more than the machine has.
func oversizeWarning(step string, asks, has []string) string {
	return fmt.Sprintf("Warning: step '%s' asks for %s; this machine has %s. Its tasks will run here one at a time "+
		"with no other task beside them; to give the step its size, run it on AWS Batch with --with batch "+
		"(run(batch = TRUE) in R).", step, listing(asks), listing(has))
}

// listing is "a", "a and b", "a, b and c".
func listing(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// planResources works out what each step's tasks take from the machine
// (Run.Machine, detected when nil) and the warnings for steps that ask for
// more than it has. Nothing is written.
func (r *Run) planResources() error {
	if r.Machine == nil {
		m, err := LocalMachine()
		if err != nil {
			return err
		}
		r.Machine = &m
	}
	r.demands = make(map[string]taskDemand, len(r.Graph.Order))
	r.resourceWarnings = nil
	for _, name := range r.Graph.Order {
		if r.execs[name].name != "" {
			// An executor decorator's (Batch): runs elsewhere, uses nothing here.
			r.demands[name] = taskDemand{}
			continue
		}
		d := taskDemand{local: true}
		if q, asked := StepRequest(r.policy(r.Graph.Steps[name]).decos); asked {
			d.req = q
			if asks, has := r.Machine.exceeds(q); len(asks) > 0 {
				d.alone = true
				if !r.clonesAll(name) {
					r.resourceWarnings = append(r.resourceWarnings, oversizeWarning(name, asks, has))
				}
			}
		}
		r.demands[name] = d
	}
	return nil
}

// demandOf is what a queued task takes from the machine.
func (r *Run) demandOf(p *pending) taskDemand {
	if r.origin != nil && !r.rerun[p.step] {
		if _, clone := r.origin[p.step+"|"+stackKey(p.stack)]; clone {
			return taskDemand{} // copied, not run
		}
	}
	return r.demands[p.step]
}

// taskEnv is a task's extra environment: the environment decorator's, and
// CUDA_VISIBLE_DEVICES naming the GPUs handed to it (the decorator's own
// CUDA_VISIBLE_DEVICES wins). A task that asked for no GPU keeps the
// engine's CUDA_VISIBLE_DEVICES, as in Metaflow.
func taskEnv(env map[string]string, g *machineGrant) map[string]string {
	if g == nil || len(g.gpus) == 0 {
		return env
	}
	if _, own := env["CUDA_VISIBLE_DEVICES"]; own {
		return env
	}
	out := make(map[string]string, len(env)+1)
	for k, v := range env {
		out[k] = v
	}
	out["CUDA_VISIBLE_DEVICES"] = strings.Join(g.gpus, ",")
	return out
}

// machinePool hands the machine out to tasks.
type machinePool struct {
	m     Machine
	cpu   float64  // handed out
	mem   float64  // handed out
	free  []string // GPU ids not handed out, in the machine's order
	local int      // local tasks running
	alone bool     // an oversize task is running
}

// machineGrant is what a running task holds.
type machineGrant struct {
	d    taskDemand
	gpus []string
}

func newMachinePool(m Machine) *machinePool {
	return &machinePool{m: m, free: append([]string(nil), m.GPUs...)}
}

// lack names the resources q lacks now.
type lack struct{ cpu, mem, gpu bool }

func (p *machinePool) lacks(q ResourceRequest) lack {
	return lack{
		cpu: q.CPU > 0 && p.cpu+q.CPU > p.m.CPUs+sizeEps,
		mem: q.MemoryMB > 0 && p.m.MemoryMB > 0 && p.mem+q.MemoryMB > p.m.MemoryMB+sizeEps,
		gpu: q.GPU > len(p.free),
	}
}

// pick chooses the next task of a queue of n (at(i) gives the i-th task's
// taskDemand and step) to start now, and takes what it asks for; -1 if none
// can start. In queue order, the first task that fits starts, with two
// rules so that no waiting task starves: a task that does not fit keeps
// what it lacks (cpu, memory or GPUs) from the tasks behind it (they may
// start meanwhile only if they ask for none of that), and an oversize task
// waits for the machine to empty while no other local task starts. Tasks
// that use nothing of the machine (remote, cloned) always start.
func (p *machinePool) pick(n int, at func(int) (taskDemand, string)) (int, *machineGrant) {
	var held lack      // what waiting tasks lack
	blocked := p.alone // no local task may start
	skipped := ""      // the step of the last task that could not start
	for i := 0; i < n; i++ {
		d, step := at(i)
		if !d.local {
			return i, &machineGrant{d: d}
		}
		if blocked || (skipped != "" && step == skipped) {
			continue // the same step asks the same: it cannot start either
		}
		if d.alone {
			if p.local == 0 {
				return i, p.take(d)
			}
			blocked = true
			continue
		}
		q := d.req
		if (held.cpu && q.CPU > 0) || (held.mem && q.MemoryMB > 0) || (held.gpu && q.GPU > 0) {
			skipped = step
			continue
		}
		l := p.lacks(q)
		if l == (lack{}) {
			return i, p.take(d)
		}
		held.cpu, held.mem, held.gpu = held.cpu || l.cpu, held.mem || l.mem, held.gpu || l.gpu
		skipped = step
	}
	return -1, nil
}

func (p *machinePool) take(d taskDemand) *machineGrant {
	g := &machineGrant{d: d}
	if !d.local {
		return g
	}
	p.local++
	p.alone = p.alone || d.alone
	p.cpu += d.req.CPU
	p.mem += d.req.MemoryMB
	k := min(d.req.GPU, len(p.free)) // an oversize task gets every GPU there is
	g.gpus = append([]string(nil), p.free[:k]...)
	p.free = p.free[k:]
	return g
}

// give returns what a task held.
func (p *machinePool) give(g *machineGrant) {
	if g == nil || !g.d.local {
		return
	}
	p.local--
	if g.d.alone {
		p.alone = false
	}
	p.cpu -= g.d.req.CPU
	p.mem -= g.d.req.MemoryMB
	if p.local == 0 { // no drift from fractional sums
		p.cpu, p.mem = 0, 0
	}
	// Back in the machine's order, so ids go out lowest first.
	back := map[string]bool{}
	for _, id := range append(p.free, g.gpus...) {
		back[id] = true
	}
	p.free = p.free[:0]
	for _, id := range p.m.GPUs {
		if back[id] {
			p.free = append(p.free, id)
		}
	}
}

// LocalMachine is this machine's size for the local scheduler: what it
// detects (DetectMachine), with METAFLOW_LOCAL_CPUS, METAFLOW_LOCAL_MEMORY
// and METAFLOW_LOCAL_GPUS set instead of it where they are given.
func LocalMachine() (Machine, error) {
	detectMachineOnce.Do(func() {
		cuda, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
		detectedMachine = DetectMachine("/", runtime.NumCPU(), cuda, set)
	})
	return machineFrom(os.Getenv, detectedMachine)
}

var (
	detectMachineOnce sync.Once
	detectedMachine   Machine
)

// machineFrom applies the METAFLOW_LOCAL_* settings of getenv to m.
func machineFrom(getenv func(string) string, m Machine) (Machine, error) {
	m.GPUs = append([]string(nil), m.GPUs...)
	if v := getenv(EnvLocalCPUs); v != "" {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return m, errs.Invalid("%s=%q is not a number of CPUs: give one above 0 (e.g. 4) or unset it", EnvLocalCPUs, v)
		}
		m.CPUs = f
	}
	if v := getenv(EnvLocalMemory); v != "" {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return m, errs.Invalid("%s=%q is not an amount of memory in MB: give one above 0 (e.g. 16000) or unset it", EnvLocalMemory, v)
		}
		m.MemoryMB = f
	}
	if v := getenv(EnvLocalGPUs); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return m, errs.Invalid("%s=%q is not a number of GPUs: give a whole number of 0 or more or unset it", EnvLocalGPUs, v)
		}
		m.GPUs = make([]string, n)
		for i := range m.GPUs {
			m.GPUs[i] = strconv.Itoa(i)
		}
	}
	return m, nil
}

// DetectMachine measures the machine under root ("/"; tests give a fake
// tree): cpus are ncpu (runtime.NumCPU: the CPUs this process may run on)
// or the cgroup's CPU quota if lower; memory is MemTotal of /proc/meminfo
// or the cgroup's memory limit if lower (cgroup v2 or v1, this process's
// group and its parents); GPUs are the NVIDIA devices of
// /proc/driver/nvidia/gpus, numbered from 0, or the ids the engine's own
// CUDA_VISIBLE_DEVICES lists when it is set (cuda, set).
func DetectMachine(root string, ncpu int, cuda string, set bool) Machine {
	m := Machine{CPUs: float64(ncpu), MemoryMB: memTotalMB(root)}
	groups := cgroupPaths(root)
	if q, ok := cpuQuota(root, groups); ok && q < m.CPUs {
		m.CPUs = q
	}
	if l, ok := memLimitMB(root, groups); ok && (m.MemoryMB == 0 || l < m.MemoryMB) {
		m.MemoryMB = l
	}
	if set {
		for _, id := range strings.Split(cuda, ",") {
			if id = strings.TrimSpace(id); id != "" {
				m.GPUs = append(m.GPUs, id)
			}
		}
		return m
	}
	if ents, err := os.ReadDir(filepath.Join(root, "proc/driver/nvidia/gpus")); err == nil {
		for i := range ents {
			m.GPUs = append(m.GPUs, strconv.Itoa(i))
		}
	}
	return m
}

func memTotalMB(root string) float64 {
	f, err := os.Open(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err == nil {
				return math.Floor(kb / 1024)
			}
		}
	}
	return 0
}

// cgroupPaths maps a controller ("" for cgroup v2) to this process's
// group, from /proc/self/cgroup.
func cgroupPaths(root string) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// groupFiles lists file in the group's folder and in its parents' (a
// limit of a parent applies too), under each place the hierarchy may be
// mounted.
func groupFiles(mounts []string, group, file string) []string {
	var out []string
	for _, mnt := range mounts {
		for g := filepath.Clean("/" + group); ; g = filepath.Dir(g) {
			out = append(out, filepath.Join(mnt, g, file))
			if g == "/" {
				break
			}
		}
	}
	return out
}

// cpuQuota is the lowest CPU quota (quota / period) of the groups.
func cpuQuota(root string, groups map[string]string) (float64, bool) {
	best, found := 0.0, false
	note := func(q float64) {
		if q > 0 && (!found || q < best) {
			best, found = q, true
		}
	}
	cg := filepath.Join(root, "sys/fs/cgroup")
	if g, ok := groups[""]; ok { // v2: cpu.max is "max 100000" or "50000 100000"
		for _, path := range groupFiles([]string{cg, filepath.Join(cg, "unified")}, g, "cpu.max") {
			if f := readFields(path); len(f) == 2 && f[0] != "max" {
				quota, err1 := strconv.ParseFloat(f[0], 64)
				period, err2 := strconv.ParseFloat(f[1], 64)
				if err1 == nil && err2 == nil && period > 0 {
					note(quota / period)
				}
			}
		}
	}
	if g, ok := groups["cpu"]; ok { // v1: cfs_quota_us is -1 without a limit
		mounts := []string{filepath.Join(cg, "cpu"), filepath.Join(cg, "cpu,cpuacct"), filepath.Join(cg, "cpuacct,cpu")}
		for _, path := range groupFiles(mounts, g, "cpu.cfs_quota_us") {
			quota, err1 := readNumber(path)
			period, err2 := readNumber(filepath.Join(filepath.Dir(path), "cpu.cfs_period_us"))
			if err1 == nil && err2 == nil && quota > 0 && period > 0 {
				note(quota / period)
			}
		}
	}
	return best, found
}

// memLimitMB is the lowest memory limit of the groups, in MiB.
func memLimitMB(root string, groups map[string]string) (float64, bool) {
	best, found := 0.0, false
	note := func(bytes float64) {
		// v1 says "no limit" with a huge number (page-rounded MaxInt64).
		if bytes > 0 && bytes < 1<<60 && (!found || bytes < best) {
			best, found = bytes, true
		}
	}
	cg := filepath.Join(root, "sys/fs/cgroup")
	if g, ok := groups[""]; ok {
		for _, path := range groupFiles([]string{cg, filepath.Join(cg, "unified")}, g, "memory.max") {
			if v, err := readNumber(path); err == nil { // "max": no limit, not a number
				note(v)
			}
		}
	}
	if g, ok := groups["memory"]; ok {
		for _, path := range groupFiles([]string{filepath.Join(cg, "memory")}, g, "memory.limit_in_bytes") {
			if v, err := readNumber(path); err == nil {
				note(v)
			}
		}
	}
	return math.Floor(best / (1 << 20)), found
}

func readFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func readNumber(path string) (float64, error) {
	f := readFields(path)
	if len(f) != 1 {
		return 0, fmt.Errorf("%s: not one value", path)
	}
	return strconv.ParseFloat(f[0], 64)
}
