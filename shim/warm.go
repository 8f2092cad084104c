package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// WarmStartEnv turns warm task starts off when "0" (or false/no/off): in the
// engine's environment for every run, in a step's environment decorator for
// that step.
const WarmStartEnv = "METAFLOW_WARM_START"

// WarmStartEnabled reads a value of METAFLOW_WARM_START ("" is on).
func WarmStartEnabled(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s must be 1 (warm task starts, the default) or 0 (a fresh Rscript per task), got %q", WarmStartEnv, v)
}

// Warm runs local tasks as children forked from a per-run R process, the
// zygote (runtime/zygote.R), that has loaded the task runtime, the run's code
// bundle and its packages once. A task still is its own process group with
// its own output, tempdir and seed; what cannot start warm (no compiled
// helper, a package that is not fork-safe, a step opting out) runs on Cold.
type Warm struct {
	// Cold runs the tasks that cannot start warm; its RuntimeDir holds
	// zygote.R and its KillGrace applies to warm tasks too.
	Cold *Local
	// Idle is how long a zygote without tasks lives on.
	Idle time.Duration
	// Refused is called once per zygote that could not start (why), e.g. to
	// log it; those tasks then run cold.
	Refused func(why string)

	mu      sync.Mutex
	zygotes map[string]*zygote
	closed  bool
}

// NewWarm makes a warm executor over cold.
func NewWarm(cold *Local) *Warm {
	return &Warm{Cold: cold, Idle: 10 * time.Second}
}

// Run implements scheduler.Executor.
func (w *Warm) Run(ctx context.Context, ln *scheduler.Launch) (int, error) {
	if on, _ := WarmStartEnabled(ln.Env[WarmStartEnv]); !on || ln.Spec == nil || ln.Spec.Code == "" {
		return w.Cold.Run(ctx, ln)
	}
	z := w.acquire(ln)
	if z == nil {
		return w.Cold.Run(ctx, ln)
	}
	defer w.release(z)
	select {
	case <-z.ready:
	case <-ctx.Done():
		return -1, fmt.Errorf("cancelled before the task started: %w", ctx.Err())
	}
	if z.refused() {
		return w.Cold.Run(ctx, ln)
	}
	code, err, started := z.run(ctx, ln, w.Cold.KillGrace)
	if !started {
		// The zygote is gone or could not fork: a fresh Rscript runs it.
		return w.Cold.Run(ctx, ln)
	}
	return code, err
}

// EndRun stops the zygotes of a run that has ended (scheduler.RunEnder):
// none of its tasks runs any more, and none will.
func (w *Warm) EndRun(flow, runID string) {
	w.mu.Lock()
	var ended []*zygote
	for key, z := range w.zygotes {
		if z.flow == flow && z.runID == runID {
			if z.idle != nil {
				z.idle.Stop()
			}
			delete(w.zygotes, key)
			ended = append(ended, z)
		}
	}
	w.mu.Unlock()
	for _, z := range ended {
		z.stop()
	}
}

// Close stops every zygote.
func (w *Warm) Close() error {
	w.mu.Lock()
	w.closed = true
	zs := w.zygotes
	w.zygotes = nil
	w.mu.Unlock()
	for _, z := range zs {
		z.stop()
	}
	return w.Cold.Close()
}

// zygoteKey: one zygote per Rscript, working folder, code bundle and
// environment decorator (a package may read the environment when loaded).
func zygoteKey(ln *scheduler.Launch) string {
	env := make([]string, 0, len(ln.Env))
	for k, v := range ln.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return strings.Join(append([]string{ln.Rscript, ln.Workdir, ln.Spec.Code}, env...), "\x00")
}

// acquire returns the zygote of the launch's key, started if need be, with
// one more task counted on it; nil if warm starts are closed.
func (w *Warm) acquire(ln *scheduler.Launch) *zygote {
	key := zygoteKey(ln)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if w.zygotes == nil {
		w.zygotes = map[string]*zygote{}
	}
	z := w.zygotes[key]
	if z != nil && z.isDead() && !z.refused() {
		z = nil // died: start another one
	}
	if z == nil {
		z = startZygote(w.Cold.RuntimeDir, ln, w.Refused)
		w.zygotes[key] = z
	}
	z.active++
	if z.idle != nil {
		z.idle.Stop()
		z.idle = nil
	}
	return z
}

// release ends a task's hold on z; the last one arms its idle timer.
func (w *Warm) release(z *zygote) {
	w.mu.Lock()
	defer w.mu.Unlock()
	z.active--
	if z.active > 0 || w.closed {
		return
	}
	z.idle = time.AfterFunc(w.Idle, func() {
		w.mu.Lock()
		if z.active > 0 || w.zygotes[z.key] != z {
			w.mu.Unlock()
			return
		}
		delete(w.zygotes, z.key)
		w.mu.Unlock()
		z.stop()
	})
}

type taskEnd struct {
	code, sig int
}

// warmTask is a task's view of the zygote's answers.
type warmTask struct {
	started chan int    // its pid
	failed  chan string // not started: why
	ended   chan taskEnd
}

// zygote is one running zygote.R and its control socket.
type zygote struct {
	key string
	// flow and runID: the run whose tasks it forks (EndRun).
	flow, runID string
	cmd         *exec.Cmd
	conn        *net.UnixConn
	out         *tailBuffer
	ready       chan struct{} // closed when it is ready, refused or died
	dead        chan struct{} // closed when its socket is closed

	mu      sync.Mutex
	why     string // set when it refused (or could not start)
	nextID  int
	tasks   map[string]*warmTask
	sendMu  sync.Mutex
	active  int         // tasks holding it (Warm.mu)
	idle    *time.Timer // (Warm.mu)
	stopped bool
}

func startZygote(runtimeDir string, ln *scheduler.Launch, refused func(string)) *zygote {
	z := &zygote{key: zygoteKey(ln), flow: ln.Spec.Flow, runID: ln.Spec.RunID, ready: make(chan struct{}), dead: make(chan struct{}),
		tasks: map[string]*warmTask{}, out: &tailBuffer{max: 4096}}
	fail := func(why string) *zygote {
		z.why = why
		close(z.ready)
		close(z.dead)
		if refused != nil {
			refused(why)
		}
		return z
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Sprintf("control socket: %v", err))
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "zygote-control"), os.NewFile(uintptr(fds[1]), "zygote-control")
	defer theirs.Close()
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return fail(fmt.Sprintf("control socket: %v", err))
	}
	z.conn = c.(*net.UnixConn)
	rscript := ln.Rscript
	if _, err := os.Stat(rscript); rscript == "" || err != nil {
		rscript = "Rscript"
	}
	z.cmd = exec.Command(rscript, filepath.Join(runtimeDir, "zygote.R"), ln.Spec.Code)
	z.cmd.Dir = ln.Workdir
	z.cmd.Env = os.Environ()
	for k, v := range ln.Env {
		z.cmd.Env = append(z.cmd.Env, k+"="+v)
	}
	z.cmd.ExtraFiles = []*os.File{theirs} // fd 3
	z.cmd.Stdout, z.cmd.Stderr = z.out, z.out
	// Its own process group (Ctrl-C in a terminal reaches the R client
	// only), killed with the engine; its children are killed with it.
	z.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := z.cmd.Start(); err != nil {
		z.conn.Close()
		return fail(fmt.Sprintf("start %s: %v", rscript, err))
	}
	go func() { _ = z.cmd.Wait() }()
	go z.read(refused)
	return z
}

func (z *zygote) refused() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.why != ""
}

func (z *zygote) isDead() bool {
	select {
	case <-z.dead:
		return true
	default:
		return false
	}
}

// read dispatches the zygote's messages until its socket closes.
func (z *zygote) read(refused func(string)) {
	buf := make([]byte, 8192)
	readyDone := false
	defer func() {
		z.mu.Lock()
		for id, t := range z.tasks {
			close(t.failed) // not started, or ended without a word: it died
			delete(z.tasks, id)
		}
		if !readyDone && z.why == "" {
			z.why = "it exited before it was ready: " + z.out.String()
			if refused != nil {
				refused(z.why)
			}
		}
		z.mu.Unlock()
		if !readyDone {
			close(z.ready)
		}
		close(z.dead)
		z.conn.Close()
	}()
	for {
		n, _, _, _, err := z.conn.ReadMsgUnix(buf, nil)
		if err != nil || n == 0 {
			return
		}
		msg := string(buf[:n])
		kind, rest, _ := strings.Cut(msg, " ")
		switch kind {
		case "R":
			if !readyDone {
				readyDone = true
				close(z.ready)
			}
		case "F":
			z.mu.Lock()
			z.why = rest
			z.mu.Unlock()
			if refused != nil {
				refused(rest)
			}
			if !readyDone {
				readyDone = true
				close(z.ready)
			}
		case "S", "X", "E":
			id, arg, _ := strings.Cut(rest, " ")
			z.mu.Lock()
			t := z.tasks[id]
			if kind != "S" {
				delete(z.tasks, id)
			}
			z.mu.Unlock()
			if t == nil {
				continue
			}
			switch kind {
			case "S":
				pid, _ := strconv.Atoi(arg)
				t.started <- pid
			case "X":
				t.failed <- arg
			case "E":
				var e taskEnd
				if _, err := fmt.Sscanf(arg, "%d %d", &e.code, &e.sig); err != nil {
					e.code = -1
				}
				t.ended <- e
			}
		}
	}
}

func (z *zygote) send(msg string, files ...*os.File) error {
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	z.sendMu.Lock()
	defer z.sendMu.Unlock()
	_, _, err := z.conn.WriteMsgUnix([]byte(msg), oob, nil)
	return err
}

// stop closes the control socket (the zygote then exits, killing any task
// left) and kills it if it lingers.
func (z *zygote) stop() {
	z.mu.Lock()
	if z.stopped || z.cmd == nil || z.cmd.Process == nil {
		z.stopped = true
		z.mu.Unlock()
		return
	}
	z.stopped = true
	z.mu.Unlock()
	z.conn.CloseWrite()
	select {
	case <-z.dead:
	case <-time.After(5 * time.Second):
	}
	// Its pid stays ours until cmd.Wait reaps it; a zygote that exited is
	// reaped by then or soon, and killing a reaped pid is skipped by os.
	_ = z.cmd.Process.Signal(syscall.SIGKILL)
}

// run runs one task in a child of the zygote. started is false when the
// task never started (the caller then runs it cold).
func (z *zygote) run(ctx context.Context, ln *scheduler.Launch, grace time.Duration) (code int, err error, started bool) {
	spec, err := specMemfd(ln.Spec)
	if err != nil {
		return -1, err, true
	}
	defer spec.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("stdout pipe: %w", err), true
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return -1, fmt.Errorf("stderr pipe: %w", err), true
	}
	defer outR.Close()
	defer errR.Close()
	closeW := func() { outW.Close(); errW.Close() }
	outLog, errLog := newLog(ln.StdoutPath), newLog(ln.StderrPath)
	defer outLog.Close()
	defer errLog.Close()

	t := &warmTask{started: make(chan int, 1), failed: make(chan string, 1), ended: make(chan taskEnd, 1)}
	z.mu.Lock()
	if z.isDead() {
		z.mu.Unlock()
		closeW()
		return -1, nil, false
	}
	z.nextID++
	id := strconv.Itoa(z.nextID)
	z.tasks[id] = t
	z.mu.Unlock()
	err = z.send("T "+id+" -", outW, errW, spec)
	closeW() // the zygote holds its own copies (then only the child does)
	spec.Close()
	if err != nil {
		z.mu.Lock()
		delete(z.tasks, id)
		z.mu.Unlock()
		return -1, nil, false
	}
	var pid int
	select {
	case pid = <-t.started:
	case <-t.failed:
		select {
		case pid = <-t.started: // it started, then the zygote died: below
		default:
			return -1, nil, false
		}
	}
	if ln.Started != nil {
		ln.Started(pid)
	}
	pumped := make(chan struct{}, 2)
	go pump(pumped, outR, outLog, false, ln.Line)
	go pump(pumped, errR, errLog, true, ln.Line)

	// Kills go through the zygote, which signals the group only while its
	// leader is unreaped, so a reused pid is never hit.
	var end taskEnd
	died := false
	var graceC <-chan time.Time
	done := ctx.Done()
wait:
	for {
		select {
		case end = <-t.ended:
			break wait
		case <-t.failed:
			died = true
			break wait
		case <-done:
			done = nil
			_ = z.send(fmt.Sprintf("K %s %d", id, int(syscall.SIGTERM)))
			graceC = time.After(grace)
		case <-graceC:
			graceC = nil
			_ = z.send(fmt.Sprintf("K %s %d", id, int(syscall.SIGKILL)))
		}
	}
	if died {
		// The task died with the zygote (parent-death signal); what it
		// started is still in its group, which its members keep from reuse.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	drainPipes(pumped, outR, errR)
	switch {
	case died:
		return -1, errors.New("killed: the warm-start parent R process (zygote) of the task exited"), true
	case end.code < 0:
		return -1, fmt.Errorf("killed by signal %s (out of memory, or killed from outside)", syscall.Signal(end.sig)), true
	case end.code == 0:
		if err := logsFailed(outLog, errLog); err != nil {
			return 0, err, true
		}
	}
	return end.code, nil, true
}

// specMemfd is the task's spec in an anonymous memory file, handed to the
// zygote with the task's pipes: a spec file in the staging folder cost a
// file creation per task (~0.1 ms of the engine's time on ext4).
func specMemfd(spec *scheduler.TaskSpec) (*os.File, error) {
	b, err := encodeSpec(spec)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("metaflow-spec", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("task spec: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "metaflow-spec")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("write task spec: %w", err)
	}
	return f, nil
}

// tailBuffer keeps the last max bytes written (a zygote's own output, for
// the message when it fails).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

var _ scheduler.RunEnder = (*Warm)(nil)
