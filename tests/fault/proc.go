package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process the suite started (an engine or an Rscript client).
// Its output goes to a file, not a pipe: an engine R starts inherits R's
// stdout and must not hold the suite's Wait open.
type proc struct {
	name    string
	cmd     *exec.Cmd
	outPath string
	done    chan struct{}
	code    int // exit code once done (-1: killed by a signal)
	started time.Time
	ended   time.Time
}

// startProc starts name args in dir with env (the whole environment).
func startProc(dir, outPath string, env []string, name string, args ...string) (*proc, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", outPath, err)
	}
	defer out.Close()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	// Its own process group: a signal meant for the suite (Ctrl-C in the
	// terminal) does not reach it; the suite kills what it started itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name + " " + strings.Join(args, " "), cmd: cmd, outPath: outPath, done: make(chan struct{}), started: time.Now()}
	register(cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		p.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -2
		}
		p.ended = time.Now()
		unregister(cmd.Process.Pid)
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits at most d for the process to end; ok is false on timeout.
func (p *proc) wait(d time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.code, true
	case <-time.After(d):
		return 0, false
	}
}

// kill sends SIGKILL to the process (only).
func (p *proc) kill() {
	if !p.exited() {
		_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	}
}

// output is what the process printed so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.outPath)
	return string(b)
}

// tail is the last n lines of the output, for reports.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Every process the suite started and that has not ended, so that an
// interrupted suite kills them (by pid) on its way out.
var (
	startedMu sync.Mutex
	started   = map[int]bool{}
)

func register(pid int) {
	startedMu.Lock()
	defer startedMu.Unlock()
	started[pid] = true
}

func unregister(pid int) {
	startedMu.Lock()
	defer startedMu.Unlock()
	delete(started, pid)
}

func killStarted() {
	startedMu.Lock()
	defer startedMu.Unlock()
	for pid := range started {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// procsMatching returns the live processes whose command line contains
// every one of subs.
func procsMatching(subs ...string) []int {
	var out []int
	for _, p := range procsWith(subs...) {
		out = append(out, p.pid)
	}
	return out
}

// cmdProc is a live process and its command line (arguments joined by
// spaces, with a trailing space).
type cmdProc struct {
	pid     int
	cmdline string
}

// procsWith returns the live processes whose command line contains every
// one of subs.
func procsWith(subs ...string) []cmdProc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []cmdProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cl := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		ok := true
		for _, s := range subs {
			if !strings.Contains(cl, s) {
				ok = false
				break
			}
		}
		if ok && alive(pid) {
			out = append(out, cmdProc{pid, cl})
		}
	}
	return out
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statFields are the fields of /proc/<pid>/stat after the command name
// (state, ppid, pgrp, ...); nil if the process is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// alive reports whether pid is a live process (zombies are dead: where
// PID 1 does not reap, a killed orphan stays a zombie).
func alive(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// groupLeader reports whether pid leads its process group (a task does:
// the engine starts each in its own group).
func groupLeader(pid int) bool {
	f := statFields(pid)
	return len(f) > 2 && f[2] == strconv.Itoa(pid)
}

// parentOf is pid's parent (0 if it is gone).
func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
