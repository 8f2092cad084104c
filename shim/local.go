// Package shim is the bridge between the engine and R: it launches task
// attempts as Rscript processes running the embedded base-R task runtime,
// captures their output line by line, and kills their whole process group.
package shim

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/ownedtmp"
)

//go:embed runtime/*.R
var runtimeFiles embed.FS

// WriteRuntime writes the base-R task runtime (task.R, msgpack.R, zygote.R)
// into dir.
func WriteRuntime(dir string) error {
	ents, err := runtimeFiles.ReadDir("runtime")
	if err != nil {
		return fmt.Errorf("read embedded runtime: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create runtime folder: %w", err)
	}
	for _, e := range ents {
		b, err := runtimeFiles.ReadFile("runtime/" + e.Name())
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", e.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("write runtime %s: %w", e.Name(), err)
		}
	}
	return nil
}

// Local runs tasks as local Rscript processes.
type Local struct {
	// RuntimeDir holds task.R and msgpack.R.
	RuntimeDir string
	// KillGrace is how long a task gets after SIGTERM before SIGKILL.
	KillGrace time.Duration
}

// RuntimePrefix starts the names of the runtime folders engines make in
// the temp folder, followed by the engine's pid (internal/ownedtmp).
const RuntimePrefix = "metaflow-runtime-"

// NewLocal writes the runtime into a fresh temp folder, named after this
// process (CleanRuntimes removes it once the process is gone).
func NewLocal() (*Local, error) {
	dir, err := ownedtmp.Make(RuntimePrefix, "")
	if err != nil {
		return nil, fmt.Errorf("create runtime folder: %w", err)
	}
	if err := WriteRuntime(dir); err != nil {
		return nil, err
	}
	return &Local{RuntimeDir: dir, KillGrace: 2 * time.Second}, nil
}

// CleanRuntimes removes the runtime folders in the temp folder left by
// engines that are gone (killed with kill -9, ...), and returns them.
func CleanRuntimes() ([]string, error) { return ownedtmp.Clean("", RuntimePrefix) }

// Close removes the runtime folder.
func (l *Local) Close() error { return os.RemoveAll(l.RuntimeDir) }

// Run implements scheduler.Executor.
func (l *Local) Run(ctx context.Context, ln *scheduler.Launch) (int, error) {
	specPath := filepath.Join(ln.Spec.OutputDir, scheduler.SpecFileName)
	if err := writeSpec(specPath, ln.Spec); err != nil {
		return -1, err
	}
	rscript := ln.Rscript
	if _, err := os.Stat(rscript); rscript == "" || err != nil {
		// The client's Rscript is not on this machine (an engine serving
		// clients of other machines): the one on PATH runs the task.
		rscript = "Rscript"
	}
	cmd := exec.Command(rscript, filepath.Join(l.RuntimeDir, "task.R"), specPath)
	cmd.Dir = ln.Workdir
	cmd.Env = os.Environ()
	for k, v := range ln.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Its own process group: Ctrl-C in the user's terminal does not reach it
	// directly, and a kill reaches everything the step started.
	// Its own process group (killed as one), and killed with the engine:
	// a task must not outlive the engine that started it (kill -9 included).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Our own pipes (not StdoutPipe): a background process the step started
	// may keep them open after Rscript exits, and must not stall the task.
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return -1, fmt.Errorf("stderr pipe: %w", err)
	}
	defer outR.Close()
	defer errR.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	outLog, errLog := newLog(ln.StdoutPath), newLog(ln.StderrPath)
	defer outLog.Close()
	defer errLog.Close()
	err = cmd.Start()
	outW.Close() // the child holds its own copies
	errW.Close()
	if err != nil {
		return -1, fmt.Errorf("start %s: %w", rscript, err)
	}
	pid := cmd.Process.Pid
	if ln.Started != nil {
		ln.Started(pid)
	}
	pumped := make(chan struct{}, 2)
	go pump(pumped, outR, outLog, false, ln.Line)
	go pump(pumped, errR, errLog, true, ln.Line)

	exited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(l.KillGrace):
			}
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		case <-exited:
		}
	}()
	// Wait for the leader to exit without reaping it, so its pid (and so its
	// process group id) cannot be reused while we kill what it left behind.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	close(exited)
	werr := cmd.Wait()
	drainPipes(pumped, outR, errR)
	if werr == nil {
		if err := logsFailed(outLog, errLog); err != nil {
			return 0, err
		}
	}
	if werr != nil {
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return -1, fmt.Errorf("killed by signal %s (out of memory, or killed from outside)", ws.Signal())
			}
			return ee.ExitCode(), nil
		}
		return -1, fmt.Errorf("wait for task: %w", werr)
	}
	return 0, nil
}

// encodeSpec is the spec as the runtime reads it (plain msgpack).
func encodeSpec(spec *scheduler.TaskSpec) ([]byte, error) {
	b, err := msgpack.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode task spec: %w", err)
	}
	return b, nil
}

func writeSpec(path string, spec *scheduler.TaskSpec) error {
	b, err := encodeSpec(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write task spec: %w", err)
	}
	return nil
}

// newLog is the log file of one stream of a task, made when the stream
// first writes: most tasks write nothing to one of them or both, and each
// file made costs the engine ~0.1 ms (ext4); a log never written reads as
// empty (Store.ReadLog).
func newLog(path string) *logFile { return &logFile{path: path} }

// logFile is a task's log file that remembers its first failed write (the
// pump goes on: the console still gets every line).
type logFile struct {
	path string
	f    *os.File
	err  error
}

// logsFailed is the first failed write of a task's logs: a task that
// succeeded but whose log could not be written (a full, read-only or failing
// datastore) fails with that cause; a failed task keeps its own error, which
// its console lines have shown.
func logsFailed(logs ...*logFile) error {
	for _, lg := range logs {
		if lg.err != nil {
			return fmt.Errorf("the task's log: %w", lg.err)
		}
	}
	return nil
}

func (l *logFile) Write(p []byte) (int, error) {
	if l.f == nil && l.err == nil {
		if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
			l.err = fmt.Errorf("create log folder: %w", err)
		} else if l.f, err = os.Create(l.path); err != nil {
			l.err = fmt.Errorf("create log: %w", err)
		}
	}
	if l.f == nil {
		return 0, l.err
	}
	n, err := l.f.Write(p)
	if err != nil && l.err == nil {
		l.err = err
	}
	return n, err
}

// Close closes the file if the stream wrote to it.
func (l *logFile) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// MaxConsoleLine is the longest line handed to the console: a longer one is
// cut there with a marker (its log file keeps every byte), so one huge line
// costs about what writing it to the file costs.
const MaxConsoleLine = 64 << 10

// CutLine is the console's form of a line of total bytes that starts with
// head (its first MaxConsoleLine bytes).
func CutLine(head string, total int) string {
	return fmt.Sprintf("%s [... line cut at %d KiB: it has %d bytes; the task's log file has all of it]",
		head, MaxConsoleLine>>10, total)
}

// pump copies a stream to its log file and hands each line to the console.
func pump(done chan<- struct{}, r io.Reader, log io.Writer, isErr bool, line func(bool, string)) {
	defer func() { done <- struct{}{} }()
	br := bufio.NewReaderSize(r, MaxConsoleLine)
	var head string // the start of a line longer than MaxConsoleLine
	var total int   // its length so far
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			_, _ = log.Write(chunk)
		}
		if err == bufio.ErrBufferFull {
			if total == 0 {
				head = string(chunk)
			}
			total += len(chunk)
			continue
		}
		if line != nil && (len(chunk) > 0 || total > 0) {
			s := strings.TrimSuffix(string(chunk), "\n")
			if total > 0 {
				s = CutLine(head, total+len(s))
			}
			line(isErr, s)
		}
		head, total = "", 0
		if err != nil {
			return
		}
	}
}

// drainPipes waits for the pumps of pipes (each signals done when its
// pipe is read to its end) to read what is left in a task's pipes; a
// process that left the task's group may still hold them, so it stops
// reading after a short grace.
func drainPipes(done <-chan struct{}, pipes ...*os.File) {
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	for left := len(pipes); left > 0; left-- {
		select {
		case <-done:
		case <-grace.C:
			for _, p := range pipes {
				p.Close()
			}
			for ; left > 0; left-- {
				<-done
			}
			return
		}
	}
}
