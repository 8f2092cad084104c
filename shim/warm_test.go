package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// The warm executor against real R: a library holding the metaflow package's
// compiled helper (built from rpkg/src, without installing the package), the
// embedded runtime, and a code bundle with the test steps below.
var (
	helperOnce sync.Once
	helperLib  string // a library whose metaflow package has the helper
	helperErr  error
)

func buildHelper(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("Rscript"); err != nil {
		t.Skip("Rscript is not installed")
	}
	helperOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mf-warm-helper-")
		if err != nil {
			helperErr = err
			return
		}
		pkg := filepath.Join(dir, "metaflow")
		src := filepath.Join(dir, "src")
		for _, d := range []string{filepath.Join(pkg, "libs"), src} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				helperErr = err
				return
			}
		}
		b, err := os.ReadFile(filepath.Join("..", "rpkg", "src", "zygote.c"))
		if err == nil {
			err = os.WriteFile(filepath.Join(src, "zygote.c"), b, 0o644)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(pkg, "DESCRIPTION"), []byte("Package: metaflow\nVersion: 0.1.0\n"), 0o644)
		}
		if err != nil {
			helperErr = err
			return
		}
		cmd := exec.Command("R", "CMD", "SHLIB", "-o", filepath.Join(pkg, "libs", "metaflow.so"), "zygote.c")
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			helperErr = err
			t.Logf("%s", out)
			return
		}
		helperLib = dir
	})
	if helperErr != nil {
		t.Fatalf("build the helper: %v", helperErr)
	}
	return helperLib
}

// Steps of the test bundle. info prints what tells processes apart and sets
// a global that a later task must not see.
const testSteps = `list(
  info = function(self) {
    st <- strsplit(readLines("/proc/self/stat"), " ")[[1]]
    writeLines("scratch", file.path(tempdir(), "scratch.txt"))
    cat(sprintf("pid=%d ppid=%s pgid=%s tmp=%s rnd=%.15f leak=%s\n", Sys.getpid(), st[4], st[5],
                tempdir(), runif(1), exists("leak", envir = globalenv())))
    assign("leak", TRUE, envir = globalenv())
    message("on stderr")
    self$x <- 1
  },
  sleep = function(self) {
    system("sleep 60 & echo $! > bg.pid")
    cat("sleeping\n")
    Sys.sleep(60)
  },
  fail = function(self) stop("boom"))`

type warmEnv struct {
	w    *Warm
	code string
	dir  string
	why  []string
	mu   sync.Mutex
}

func newWarmEnv(t *testing.T, lib string) *warmEnv {
	t.Helper()
	t.Setenv("R_LIBS", lib)
	dir := t.TempDir()
	code := filepath.Join(dir, "_code.rds")
	script := `x <- list(functions = eval(parse(text = commandArgs(TRUE)[1])), globals = list(g = 42),
                 packages = character()); writeBin(serialize(x, NULL), commandArgs(TRUE)[2])`
	if out, err := exec.Command("Rscript", "-e", script, testSteps, code).CombinedOutput(); err != nil {
		t.Fatalf("write code bundle: %v\n%s", err, out)
	}
	rt := filepath.Join(dir, "runtime")
	if err := WriteRuntime(rt); err != nil {
		t.Fatal(err)
	}
	e := &warmEnv{code: code, dir: dir}
	e.w = NewWarm(&Local{RuntimeDir: rt, KillGrace: 300 * time.Millisecond})
	e.w.Refused = func(why string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.why = append(e.why, why)
	}
	t.Cleanup(func() { e.w.Close() })
	return e
}

func (e *warmEnv) launch(t *testing.T, step string, c *captured) *scheduler.Launch {
	out := t.TempDir()
	l := &scheduler.Launch{
		Spec: &scheduler.TaskSpec{Flow: "F", RunID: "1", Step: step, TaskID: "2", Code: e.code,
			Inputs: []scheduler.SpecInput{{Step: "start", TaskID: "1"}}, Index: -1, OutputDir: out,
			Current: map[string]string{"step_name": step}},
		Rscript:    "Rscript",
		Workdir:    e.dir,
		StdoutPath: filepath.Join(out, "0.stdout"),
		StderrPath: filepath.Join(out, "0.stderr"),
	}
	if c != nil {
		l.Line = c.add
	}
	return l
}

type info struct {
	pid, ppid, pgid int
	tmp, rnd, leak  string
}

var infoRE = regexp.MustCompile(`pid=(\d+) ppid=(\d+) pgid=(\d+) tmp=(\S+) rnd=(\S+) leak=(\w+)`)

// streams records console lines, and which came from stderr.
type streams struct {
	mu          sync.Mutex
	lines, errs []string
}

func (c *streams) add(stderr bool, s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, s)
	if stderr {
		c.errs = append(c.errs, s)
	}
}

func runInfo(t *testing.T, e *warmEnv, env map[string]string) (info, *streams) {
	t.Helper()
	var c streams
	l := e.launch(t, "info", nil)
	l.Line = c.add
	l.Env = env
	started := 0
	l.Started = func(pid int) { started = pid }
	code, err := e.w.Run(context.Background(), l)
	out, _ := os.ReadFile(l.StdoutPath)
	errb, _ := os.ReadFile(l.StderrPath)
	if code != 0 || err != nil {
		t.Fatalf("code=%d err=%v\nstdout: %s\nstderr: %s", code, err, out, errb)
	}
	m := infoRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("stdout %q", out)
	}
	var in info
	in.pid, _ = strconv.Atoi(m[1])
	in.ppid, _ = strconv.Atoi(m[2])
	in.pgid, _ = strconv.Atoi(m[3])
	in.tmp, in.rnd, in.leak = m[4], m[5], m[6]
	if started != in.pid {
		t.Fatalf("Started(%d), but the task's pid is %d", started, in.pid)
	}
	if string(errb) != "on stderr\n" {
		t.Fatalf("stderr log %q, want only the step's message", errb)
	}
	if _, err := os.Stat(filepath.Join(l.Spec.OutputDir, scheduler.ResultFile)); err != nil {
		t.Fatalf("no task result: %v", err)
	}
	return in, &c
}

func TestWarmTasksAreFreshProcesses(t *testing.T) {
	lib := buildHelper(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // R's temp folders: the zygote's and its children's
	e := newWarmEnv(t, lib)
	var seen []info
	for i := 0; i < 3; i++ {
		in, c := runInfo(t, e, nil)
		if in.ppid == os.Getpid() {
			t.Fatalf("task %d ran cold (its parent is the engine): %v", i, e.why)
		}
		if in.pgid != in.pid {
			t.Fatalf("task %d: process group %d, want its own (%d)", i, in.pgid, in.pid)
		}
		if in.leak != "FALSE" {
			t.Fatalf("task %d saw a global set by an earlier task", i)
		}
		if _, err := os.Stat(in.tmp); !os.IsNotExist(err) {
			t.Fatalf("task %d: its tempdir %s is still there (%v)", i, in.tmp, err)
		}
		// Each stream's lines reach the console marked as theirs.
		if len(c.lines) != 2 || len(c.errs) != 1 || c.errs[0] != "on stderr" ||
			!(strings.Contains(c.lines[0], in.rnd) || strings.Contains(c.lines[1], in.rnd)) {
			t.Fatalf("task %d: console lines %q, stderr lines %q", i, c.lines, c.errs)
		}
		for _, p := range seen {
			if p.pid == in.pid || p.tmp == in.tmp || p.rnd == in.rnd {
				t.Fatalf("tasks share a pid, tempdir or random seed: %+v and %+v", p, in)
			}
			if p.ppid != in.ppid {
				t.Fatalf("tasks of one run came from different parents: %d and %d", p.ppid, in.ppid)
			}
		}
		seen = append(seen, in)
	}
	// The zygote keeps no temp folder (children would share it).
	if left, _ := filepath.Glob(filepath.Join(tmp, "Rtmp*")); len(left) != 0 {
		t.Fatalf("R temp folders %q left while the zygote runs", left)
	}
	e.w.Close()
	if left, _ := filepath.Glob(filepath.Join(tmp, "Rtmp*")); len(left) != 0 {
		t.Fatalf("R temp folders %q left after the zygote stopped", left)
	}
}

// An opt-out, a zygote that refuses (a package that is not fork-safe), no
// helper: the task runs as a fresh Rscript, child of the engine.
func TestWarmFallsBackToColdStarts(t *testing.T) {
	lib := buildHelper(t)
	noHelper := t.TempDir()
	if err := os.MkdirAll(filepath.Join(noHelper, "metaflow"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noHelper, "metaflow", "DESCRIPTION"), []byte("Package: metaflow\nVersion: 0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, lib string
		env       map[string]string
		why       string
	}{
		{"opted out", lib, map[string]string{WarmStartEnv: "0"}, ""},
		{"not fork-safe", lib, map[string]string{"METAFLOW_WARM_START_UNSAFE": "compiler"}, "package compiler is not fork-safe"},
		{"no helper", noHelper, nil, "has no compiled helper"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newWarmEnv(t, tc.lib)
			for i := 0; i < 2; i++ {
				in, _ := runInfo(t, e, tc.env)
				if in.ppid != os.Getpid() {
					t.Fatalf("task %d did not run as a fresh Rscript (parent %d)", i, in.ppid)
				}
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if tc.why == "" && len(e.why) != 0 || tc.why != "" && (len(e.why) != 1 || !strings.Contains(e.why[0], tc.why)) {
				t.Fatalf("refusals %q, want one containing %q", e.why, tc.why)
			}
		})
	}
}

// A zygote that dies takes its running task with it (and what the task
// started), and is replaced for the next task.
func TestWarmZygoteDeath(t *testing.T) {
	e := newWarmEnv(t, buildHelper(t))
	first, _ := runInfo(t, e, nil)
	e.w.mu.Lock()
	var old *zygote
	for _, z := range e.w.zygotes {
		old = z
	}
	e.w.mu.Unlock()

	bg := filepath.Join(e.dir, "bg.pid")
	var c captured
	l := e.launch(t, "sleep", &c)
	l.Line = func(_ bool, s string) {
		if s == "sleeping" {
			_ = syscall.Kill(first.ppid, syscall.SIGKILL)
		}
	}
	code, err := e.w.Run(context.Background(), l)
	if code != -1 || err == nil || !strings.Contains(err.Error(), "zygote") {
		t.Fatalf("code=%d err=%v, want the task killed with its zygote", code, err)
	}
	b, _ := os.ReadFile(bg)
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	time.Sleep(50 * time.Millisecond)
	if child == 0 || alive(child) {
		t.Fatalf("background process %d survived its task", child)
	}
	select {
	case <-old.dead:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine did not notice its zygote died")
	}
	second, _ := runInfo(t, e, nil)
	if second.ppid == first.ppid || second.ppid == os.Getpid() {
		t.Fatalf("after its zygote died, a task ran from parent %d (old zygote %d, engine %d)",
			second.ppid, first.ppid, os.Getpid())
	}
}

// Kill by process group, cancellation (Ctrl-C) and the timeout end the task
// and what it started.
func TestWarmKillCancelTimeout(t *testing.T) {
	e := newWarmEnv(t, buildHelper(t))
	cases := []struct {
		name string
		stop func(pid int, cancel context.CancelFunc)
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"kill the group", func(pid int, _ context.CancelFunc) { _ = syscall.Kill(-pid, syscall.SIGKILL) }, nil},
		{"cancel", func(_ int, cancel context.CancelFunc) { cancel() }, nil},
		{"timeout", func(int, context.CancelFunc) {}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 1500*time.Millisecond)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bg := filepath.Join(e.dir, "bg.pid")
			os.Remove(bg)
			var c captured
			l := e.launch(t, "sleep", &c)
			ctx, cancel := context.WithCancel(context.Background())
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			pidc := make(chan int, 1)
			l.Started = func(pid int) { pidc <- pid }
			l.Line = func(_ bool, s string) {
				if s == "sleeping" {
					tc.stop(<-pidc, cancel)
				}
			}
			start := time.Now()
			code, err := e.w.Run(ctx, l)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("the task ended after %s", d)
			}
			if code != -1 || err == nil || !strings.Contains(err.Error(), "killed by signal") {
				t.Fatalf("code=%d err=%v, want killed", code, err)
			}
			b, _ := os.ReadFile(bg)
			child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			time.Sleep(50 * time.Millisecond)
			if child == 0 || alive(child) {
				t.Fatalf("background process %d survived its task", child)
			}
		})
	}
}

func TestWarmStepFailure(t *testing.T) {
	e := newWarmEnv(t, buildHelper(t))
	var c captured
	l := e.launch(t, "fail", &c)
	code, err := e.w.Run(context.Background(), l)
	errb, _ := os.ReadFile(l.StderrPath)
	if code != 1 || err != nil {
		t.Fatalf("code=%d err=%v", code, err)
	}
	if !strings.Contains(string(errb), "Error in fail(self) : boom") || strings.Contains(string(errb), "quit()") {
		t.Fatalf("stderr %q", errb)
	}
	b, _ := os.ReadFile(filepath.Join(l.Spec.OutputDir, scheduler.ErrorFile))
	if !strings.Contains(string(b), "boom") {
		t.Fatalf("error file %q", b)
	}
}

func TestWarmStartEnabled(t *testing.T) {
	for v, want := range map[string]bool{"": true, "1": true, "on": true, "0": false, "false": false, "OFF": false} {
		got, err := WarmStartEnabled(v)
		if err != nil || got != want {
			t.Fatalf("%q: %v %v", v, got, err)
		}
	}
	if _, err := WarmStartEnabled("maybe"); err == nil || !strings.Contains(err.Error(), "METAFLOW_WARM_START must be") {
		t.Fatalf("err %v", err)
	}
}

// A warm task whose log cannot be written (/dev/full: every write is
// ENOSPC) fails with that cause, as a fresh Rscript's does.
func TestWarmLogWriteFailureFailsTheTask(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("skipped: no /dev/full here")
	}
	e := newWarmEnv(t, buildHelper(t))
	var c captured
	l := e.launch(t, "info", &c)
	l.StdoutPath = "/dev/full"
	code, err := e.w.Run(context.Background(), l)
	if code != 0 || err == nil || !strings.Contains(err.Error(), "the task's log: write /dev/full: no space left on device") {
		t.Fatalf("code=%d err=%v, want the log's write error", code, err)
	}
	if len(e.why) != 0 {
		t.Fatalf("the task did not start warm: %v", e.why)
	}
}

// A run's end stops its zygote at once (not after Idle); another run's
// zygote lives on.
func TestWarmEndRunStopsTheRunsZygote(t *testing.T) {
	e := newWarmEnv(t, buildHelper(t))
	e.w.Idle = time.Hour
	zygotePid := func(runID string) int {
		e.w.mu.Lock()
		defer e.w.mu.Unlock()
		for _, z := range e.w.zygotes {
			if z.runID == runID && z.cmd != nil && z.cmd.Process != nil {
				return z.cmd.Process.Pid
			}
		}
		return 0
	}
	// Each run has its own code bundle (the datastore's <run>/_code.rds).
	code2 := filepath.Join(t.TempDir(), "_code.rds")
	if b, err := os.ReadFile(e.code); err != nil || os.WriteFile(code2, b, 0o644) != nil {
		t.Fatalf("copy the code bundle: %v", err)
	}
	for _, run := range []string{"1", "2"} {
		l := e.launch(t, "info", nil)
		l.Spec.RunID = run
		if run == "2" {
			l.Spec.Code = code2
		}
		if code, err := e.w.Run(context.Background(), l); code != 0 || err != nil {
			t.Fatalf("run %s: code=%d err=%v", run, code, err)
		}
	}
	one, two := zygotePid("1"), zygotePid("2")
	if one == 0 || two == 0 || one == two {
		t.Fatalf("zygotes of runs 1 and 2: %d, %d", one, two)
	}
	e.w.EndRun("F", "1")
	if zygotePid("1") != 0 {
		t.Fatal("run 1's zygote is still kept")
	}
	gone := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !gone; time.Sleep(10 * time.Millisecond) {
		gone = syscall.Kill(one, 0) != nil || processState(one) == "Z"
	}
	if !gone {
		t.Fatal("run 1's zygote outlived the run's end")
	}
	if syscall.Kill(two, 0) != nil {
		t.Fatal("run 2's zygote was stopped too")
	}
}

// processState is the state letter of /proc/<pid>/stat ("" if gone).
func processState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
