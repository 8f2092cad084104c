package shim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// fakeRscript writes a shell script standing in for Rscript: the executor's
// process handling does not depend on what the task runs.
func fakeRscript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Rscript")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

type captured struct {
	mu    sync.Mutex
	lines []string
}

func (c *captured) add(stderr bool, s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, s)
}

func launch(t *testing.T, rscript string, c *captured) *scheduler.Launch {
	dir := t.TempDir()
	return &scheduler.Launch{
		Spec:       &scheduler.TaskSpec{OutputDir: dir},
		Rscript:    rscript,
		Workdir:    dir,
		StdoutPath: filepath.Join(dir, "0.stdout"),
		StderrPath: filepath.Join(dir, "0.stderr"),
		Line:       c.add,
	}
}

// alive reports whether pid runs; a zombie (killed, not yet reaped by an
// init that may never reap) counts as dead.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestRunCapturesOutputAndExitCode(t *testing.T) {
	ex := &Local{RuntimeDir: t.TempDir(), KillGrace: time.Second}
	cases := []struct {
		name, body string
		code       int
		errPart    string
	}{
		{"ok", "echo out; echo err >&2", 0, ""},
		{"exit code", "echo partial; exit 3", 3, ""},
		{"signal", "kill -9 $$", -1, "killed by signal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cap captured
			l := launch(t, fakeRscript(t, c.body), &cap)
			code, err := ex.Run(context.Background(), l)
			if code != c.code || (c.errPart == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.errPart)) {
				t.Fatalf("code=%d err=%v, want code %d err containing %q", code, err, c.code, c.errPart)
			}
			if c.name == "ok" {
				out, _ := os.ReadFile(l.StdoutPath)
				errb, _ := os.ReadFile(l.StderrPath)
				if string(out) != "out\n" || string(errb) != "err\n" || len(cap.lines) != 2 {
					t.Fatalf("stdout %q stderr %q lines %v", out, errb, cap.lines)
				}
			}
		})
	}
}

// A background process left by a step must neither stall the task nor survive it.
func TestBackgroundChildDoesNotStallTask(t *testing.T) {
	ex := &Local{RuntimeDir: t.TempDir(), KillGrace: time.Second}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	var cap captured
	l := launch(t, fakeRscript(t, "sleep 30 & echo $! > "+pidFile+"; echo done"), &cap)
	start := time.Now()
	code, err := ex.Run(context.Background(), l)
	if err != nil || code != 0 {
		t.Fatalf("code=%d err=%v", code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("task took %s: stalled on its background child", d)
	}
	b, _ := os.ReadFile(pidFile)
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	time.Sleep(50 * time.Millisecond)
	if child == 0 || alive(child) {
		t.Fatalf("background child %d survived its task", child)
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	ex := &Local{RuntimeDir: t.TempDir(), KillGrace: 200 * time.Millisecond}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	var cap captured
	l := launch(t, fakeRscript(t, "trap '' TERM; sleep 30 & echo $! > "+pidFile+"; wait"), &cap)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, _ = ex.Run(ctx, l)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %s", d)
	}
	b, _ := os.ReadFile(pidFile)
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	time.Sleep(50 * time.Millisecond)
	if child == 0 || alive(child) {
		t.Fatalf("child %d survived the cancel", child)
	}
}

// A client on another machine names its own Rscript; where it is not, the
// Rscript on PATH runs the task.
func TestMissingRscriptFallsBackToPath(t *testing.T) {
	ex := &Local{RuntimeDir: t.TempDir(), KillGrace: time.Second}
	onPath := fakeRscript(t, "echo from-path")
	t.Setenv("PATH", filepath.Dir(onPath)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, rscript := range []string{"/nonexistent/client/bin/Rscript", ""} {
		var cap captured
		l := launch(t, rscript, &cap)
		code, err := ex.Run(context.Background(), l)
		out, _ := os.ReadFile(l.StdoutPath)
		if err != nil || code != 0 || string(out) != "from-path\n" {
			t.Fatalf("Rscript %q: code=%d err=%v stdout %q", rscript, code, err, out)
		}
	}
}

func TestPumpCutsLongConsoleLines(t *testing.T) {
	long := strings.Repeat("x", 3*MaxConsoleLine+5)
	cases := []struct {
		name, in string
		want     []string
	}{
		{"short lines", "a\nb\n", []string{"a", "b"}},
		{"no final newline", "a\nb", []string{"a", "b"}},
		{"exactly the limit", strings.Repeat("y", MaxConsoleLine-1) + "\nz\n", []string{strings.Repeat("y", MaxConsoleLine-1), "z"}},
		{"a long line between short ones", "a\n" + long + "\nb\n", []string{"a",
			strings.Repeat("x", MaxConsoleLine) + fmt.Sprintf(" [... line cut at 64 KiB: it has %d bytes; the task's log file has all of it]", len(long)), "b"}},
		{"a long last line", long, []string{strings.Repeat("x", MaxConsoleLine) + fmt.Sprintf(" [... line cut at 64 KiB: it has %d bytes; the task's log file has all of it]", len(long))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			var got []string
			done := make(chan struct{}, 1)
			pump(done, strings.NewReader(tc.in), &log, false, func(_ bool, s string) { got = append(got, s) })
			<-done
			if log.String() != tc.in {
				t.Fatalf("log has %d bytes, want all %d", log.Len(), len(tc.in))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("line %d = %.80q... (%d bytes), want %.80q... (%d bytes)", i, got[i], len(got[i]), tc.want[i], len(tc.want[i]))
				}
			}
		})
	}
}

// A log that cannot be written (here /dev/full: every write is ENOSPC)
// fails a task that otherwise succeeded, with that cause; the console
// still gets every line; a task that failed keeps its own failure.
func TestLogWriteFailureFailsTheTask(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("skipped: no /dev/full here")
	}
	ex := &Local{RuntimeDir: t.TempDir(), KillGrace: time.Second}
	cases := []struct {
		name, body string
		code       int
		errPart    string
	}{
		{"succeeded", "echo out; echo err >&2", 0, "the task's log: write /dev/full: no space left on device"},
		{"failed", "echo out; exit 3", 3, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cap captured
			l := launch(t, fakeRscript(t, c.body), &cap)
			l.StdoutPath = "/dev/full"
			code, err := ex.Run(context.Background(), l)
			if code != c.code || (c.errPart == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.errPart)) {
				t.Fatalf("code=%d err=%v, want code %d err containing %q", code, err, c.code, c.errPart)
			}
			if !slices.Contains(cap.lines, "out") { // stdout and stderr race: no order
				t.Fatalf("console lines %q, want the task's output", cap.lines)
			}
		})
	}
}
