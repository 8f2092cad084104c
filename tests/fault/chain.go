package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// chain is one working folder and its datastore: a run, injections into
// it and the resumes after them, until a resume completes.
type chain struct {
	s      *suite
	id     int
	dir    string // the flow's working folder
	root   string // its datastore (the .metaflow folder)
	base   string // METAFLOW_DATASTORE_SYSROOT_LOCAL, for a tmpfs datastore
	served bool   // engine: metaflow-engine serve (else each client's embedded one)
	cold   bool   // tasks: a fresh Rscript each (METAFLOW_WARM_START=0), else forked by a zygote
	sock   string
	engine *proc
	env    []string
	ledger *ledger
	// done: its newest run completed (and was compared); broken: it
	// completed with results that are not an uninterrupted run's.
	done, broken bool
	clients      int
	// killK, if set, makes kill-task kill the killK-th task to start.
	killK int
}

func (s *suite) newChain(tmpfs bool) (*chain, error) {
	s.chains++
	c := &chain{s: s, id: s.chains, dir: filepath.Join(s.tmp, "c"+strconv.Itoa(s.chains)), served: s.rng.Intn(2) == 0}
	// Tasks start warm (forked by a zygote) by default; half the chains
	// start a fresh Rscript per task.
	c.cold = s.rng.Intn(2) == 0
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "flow.R"), []byte(flowSource), 0o644); err != nil {
		return nil, err
	}
	c.env = append([]string{}, s.env...)
	if c.cold {
		c.env = append(c.env, "METAFLOW_WARM_START=0")
	}
	c.root = filepath.Join(c.dir, ".metaflow")
	if tmpfs {
		c.base = filepath.Join(c.dir, "ds")
		if err := os.MkdirAll(c.base, 0o755); err != nil {
			return nil, err
		}
		if err := mountTmpfs(c.base, "8m"); err != nil {
			return nil, err
		}
		s.mounts = append(s.mounts, c.base)
		c.root = filepath.Join(c.base, ".metaflow")
		c.env = append(c.env, "METAFLOW_DATASTORE_SYSROOT_LOCAL="+c.base)
	}
	if c.served {
		sd := filepath.Join(c.dir, "s")
		if err := os.MkdirAll(sd, 0o700); err != nil {
			return nil, err
		}
		c.sock = filepath.Join(sd, "e.sock")
		c.env = append(c.env, "METAFLOW_ENGINE_ADDRESS=unix://"+c.sock)
	}
	c.ledger = newLedger(c.root)
	return c, nil
}

func (c *chain) mode() string {
	starts := "warm starts"
	if c.cold {
		starts = "cold starts"
	}
	if c.served {
		return "served engine, " + starts
	}
	return "embedded engine, " + starts
}

// close stops the chain's engine, unmounts its tmpfs and removes it.
func (c *chain) close() {
	if c.engine != nil {
		_ = syscall.Kill(c.engine.pid(), syscall.SIGTERM)
		if _, ok := c.engine.wait(15 * time.Second); !ok {
			c.engine.kill()
			c.engine.wait(5 * time.Second)
		}
		c.engine = nil
	}
	for _, pid := range procsMatching(c.dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if c.base != "" {
		unmount(c.base)
		for i, m := range c.s.mounts {
			if m == c.base {
				c.s.mounts = append(c.s.mounts[:i], c.s.mounts[i+1:]...)
				break
			}
		}
	}
	if !c.s.keep {
		os.RemoveAll(c.dir)
	}
}

// ensureEngine (re)starts the chain's served engine.
func (c *chain) ensureEngine() error {
	if !c.served || (c.engine != nil && !c.engine.exited()) {
		return nil
	}
	e, err := c.s.startEngine(filepath.Dir(c.sock), c.sock, c.env)
	if err != nil {
		return err
	}
	c.engine = e
	return nil
}

// client starts `Rscript flow.R args...`.
func (c *chain) client(args ...string) (*proc, error) {
	if err := c.ensureEngine(); err != nil {
		return nil, err
	}
	c.clients++
	out := filepath.Join(c.dir, fmt.Sprintf("client-%d.log", c.clients))
	return startProc(c.dir, out, c.env, "Rscript", append([]string{"flow.R"}, args...)...)
}

// tasks are the live task processes of the chain's runs (their spec is
// in the datastore's staging folder), and the zygotes warm tasks are
// forked from (their code bundle is in the datastore).
func (c *chain) tasks() []int {
	return append(procsMatching("task.R", c.root), procsMatching("zygote.R", c.root)...)
}

// taskSpecs maps each running task (its spec file, one per attempt; a warm
// task: "warm <pid>") to the pid of its process, the leader of its process
// group: R's start-up script may fork shells with the same arguments for a
// moment.
func (c *chain) taskSpecs() map[string]int {
	out := map[string]int{}
	zygotes := procsWith("zygote.R", c.root)
	isZygote := map[int]bool{}
	for _, p := range zygotes {
		isZygote[p.pid] = true
	}
	for _, p := range zygotes { // a zygote's children are its tasks
		if isZygote[parentOf(p.pid)] && groupLeader(p.pid) {
			out["warm "+strconv.Itoa(p.pid)] = p.pid
		}
	}
	for _, p := range procsWith("task.R", c.root) {
		spec := ""
		for _, a := range strings.Fields(p.cmdline) {
			if strings.HasSuffix(a, "_spec.mpk") {
				spec = a
			}
		}
		if spec != "" && groupLeader(p.pid) {
			out[spec] = p.pid
		}
	}
	return out
}

// recorded lists the runs that have their record, oldest first.
func (c *chain) recorded() []string {
	ids, _ := c.ledger.runIDs()
	var out []string
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(c.root, flowName, id, "_run.json")); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// running lists what reads "running" through the engine, and errors
// reading runs (but a run folder without its record, which a kill while a
// run was being created leaves, is no error).
func (c *chain) running(skip string) (run []string, problems []string) {
	for _, id := range c.recorded() {
		ri, err := c.s.reader.run(c.root, flowName, id)
		if err != nil {
			if id != skip {
				problems = append(problems, fmt.Sprintf("lost: run %s/%s cannot be read: %v", flowName, id, err))
			}
			continue
		}
		run = append(run, runningOf(ri)...)
	}
	return run, problems
}

// settled waits until nothing of the chain reads "running" (the engine is
// gone or the runs ended), within the heartbeat rule's bound.
func (c *chain) settled(why string) []string {
	var left []string
	var problems []string
	ok := waitFor(staleAfter, func() bool {
		left, problems = c.running("")
		return len(left) == 0 && len(problems) == 0
	})
	if !ok {
		problems = append(problems, fmt.Sprintf("stuck: %s still read running %s (waited %s)", strings.Join(left, ", "), why, staleAfter))
	}
	return problems
}

// noOrphans checks that no task process of the chain is left (the run
// ended or its engine died); survivors are killed.
func (c *chain) noOrphans(why string) []string {
	if waitFor(5*time.Second, func() bool { return len(c.tasks()) == 0 }) {
		return nil
	}
	left := c.tasks()
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return []string{fmt.Sprintf("orphan: task processes %v outlived %s", left, why)}
}

// checkLedger scans for newly completed tasks (they must hold an
// uninterrupted run's artifacts) and reads every recorded artifact back.
func (c *chain) checkLedger() []string {
	problems, err := c.ledger.scan(c.s.want)
	if err != nil {
		problems = append(problems, "lost: "+err.Error())
	}
	p, _ := c.ledger.verify(c.s.reader, nil, "")
	return append(problems, p...)
}

// leftoversGone checks that the runtime folder of a killed engine is
// removed by the next engine that starts (the chain's own, or one started
// for the check).
func (c *chain) leftoversGone(deadPID int) []string {
	glob := filepath.Join(c.s.tmp, "t", fmt.Sprintf("metaflow-runtime-%d-*", deadPID))
	if c.served {
		if err := c.ensureEngine(); err != nil {
			return []string{"the engine did not restart: " + err.Error()}
		}
	} else {
		d := filepath.Join(c.dir, "n")
		if err := os.MkdirAll(d, 0o700); err != nil {
			return []string{err.Error()}
		}
		e, err := c.s.startEngine(d, filepath.Join(d, "e.sock"), c.env)
		if err != nil {
			return []string{"an engine did not start: " + err.Error()}
		}
		defer func() {
			_ = syscall.Kill(e.pid(), syscall.SIGTERM)
			if _, ok := e.wait(10 * time.Second); !ok {
				e.kill()
			}
		}()
	}
	if waitFor(5*time.Second, func() bool { m, _ := filepath.Glob(glob); return len(m) == 0 }) {
		return nil
	}
	m, _ := filepath.Glob(glob)
	return []string{fmt.Sprintf("leftover: the runtime folder %v of the killed engine (pid %d) is still there after the next engine started", m, deadPID)}
}

// tasksToRun is how many tasks `cmd` runs: all six for a run, for a resume
// those from the step it resumes from on.
func (c *chain) tasksToRun(cmd string) int {
	if ids := c.recorded(); cmd == "resume" && len(ids) > 0 {
		if _, left := c.resumeFrom(ids[len(ids)-1]); left > 0 {
			return left
		}
	}
	return 6
}

// nextCommand is how the chain goes on: resume its newest ended run, or
// run again when no run was recorded yet.
func (c *chain) nextCommand() string {
	if len(c.recorded()) == 0 {
		return "run"
	}
	return "resume"
}

// newestCompleted reports whether the newest recorded run reads completed.
func (c *chain) newestCompleted() (string, bool) {
	ids := c.recorded()
	if len(ids) == 0 {
		return "", false
	}
	id := ids[len(ids)-1]
	ri, err := c.s.reader.run(c.root, flowName, id)
	return id, err == nil && ri.Status == "completed"
}

// compare checks that run id holds an uninterrupted run's results.
func (c *chain) compare(id string) []string {
	got, err := c.ledger.resultsOf(id)
	if err != nil {
		return []string{fmt.Sprintf("lost: the results of run %s cannot be read: %v", id, err)}
	}
	if d := diff(c.s.want, got); d != "" {
		c.broken = true
		return []string{fmt.Sprintf("wrong value: run %s completed with results that are not an uninterrupted run's: %s", id, d)}
	}
	return nil
}

// finish resumes (or runs) until the chain's newest run completes, with
// no injection: it must complete, with an uninterrupted run's results, and
// leave no staging folders of ended runs.
func (c *chain) finish() []string {
	var problems []string
	if id, ok := c.newestCompleted(); ok {
		c.done = true
		return c.compare(id)
	}
	cmd := c.nextCommand()
	tasks := c.tasksToRun(cmd)
	cl, err := c.client(cmd)
	if err != nil {
		return []string{err.Error()}
	}
	code, ok := cl.wait(3 * time.Minute)
	if !ok {
		cl.kill()
		return []string{fmt.Sprintf("stuck: `%s` did not end within 3 minutes:\n%s", cmd, cl.tail(10))}
	}
	if code == 0 {
		c.s.observe(cl.ended.Sub(cl.started), tasks)
	}
	if code != 0 {
		return []string{fmt.Sprintf("resume failed: `%s` after the injection exited %d:\n%s", cmd, code, indent(cl.tail(8)))}
	}
	id, ok := c.newestCompleted()
	if !ok {
		return []string{fmt.Sprintf("resume failed: `%s` exited 0 but its run %s does not read completed", cmd, id)}
	}
	c.done = true
	problems = append(problems, c.compare(id)...)
	problems = append(problems, c.stagingLeft()...)
	return problems
}

var taskStaging = regexp.MustCompile(`^[0-9]+-`)

// stagingLeft lists task staging folders left in the datastore once every
// run has ended (each run's start removes those of ended runs).
func (c *chain) stagingLeft() []string {
	ents, _ := os.ReadDir(filepath.Join(c.root, flowName, "_staging"))
	var left []string
	for _, e := range ents {
		if taskStaging.MatchString(e.Name()) {
			left = append(left, e.Name())
		}
	}
	if len(left) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("leftover: staging folders %v of ended runs remain after a new run started", left)}
}

// uniform is a random duration in [lo, hi).
func (c *chain) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(c.s.rng.Int63n(int64(hi-lo)))
}

// sleepOrExit sleeps d unless the client ends first (then false).
func sleepOrExit(cl *proc, d time.Duration) bool {
	select {
	case <-cl.done:
		return false
	case <-time.After(d):
		return !cl.exited()
	}
}

// killChain does the kill injections of kinds one after another on the
// chain (run, kill, resume, kill, ...), then resumes until the run
// completes; a damage kind in mtr is done to the first killed run before
// it is resumed. It returns the kinds it did not get to do.
func (c *chain) killChain(kinds, mtr []string) (left, mtrLeft []string) {
	var pending []string // the last injection's problems wait for the final resume
	var lastKind, lastWhat string
	for len(kinds) > 0 {
		cmd := c.nextCommand()
		what, problems, ok := c.killOnce(kinds[0], cmd)
		if !ok {
			c.s.tally.add(kinds[0], missed)
			c.s.logf("%s: missed (%s)", kinds[0], what)
			if id, done := c.newestCompleted(); done {
				c.done = true
				if lastKind != "" {
					c.s.record(lastKind, lastWhat, append(pending, c.compare(id)...), false)
				}
				return kinds, mtr
			}
			continue
		}
		if lastKind != "" {
			c.s.record(lastKind, lastWhat, pending, false)
		}
		lastKind, lastWhat, pending = kinds[0], what, problems
		kinds = kinds[1:]
		if c.done { // the kill came as the run completed
			break
		}
		if len(mtr) > 0 && len(c.recorded()) > 0 {
			c.mutate(mtr[0], c.recorded()[len(c.recorded())-1])
			mtr = mtr[1:]
			if c.done || c.broken {
				break
			}
		}
	}
	if !c.done && !c.broken {
		pending = append(pending, c.finish()...)
	}
	if lastKind != "" {
		c.s.record(lastKind, lastWhat, pending, false)
	}
	return kinds, mtr
}

// killOnce starts `Rscript flow.R cmd` and SIGKILLs the engine, the client
// or a task at a random point; ok is false if the run ended first. It
// returns what it did and the invariants' problems (resume excluded).
func (c *chain) killOnce(kind, cmd string) (what string, problems []string, ok bool) {
	cl, err := c.client(cmd)
	if err != nil {
		return err.Error(), []string{err.Error()}, true
	}
	defer func() {
		if !cl.exited() {
			cl.kill()
			cl.wait(10 * time.Second)
		}
	}()
	// Within the expected span: an uninterrupted run's duration, for a
	// resume the share of the tasks it runs again (a kill after the end is
	// a miss, which costs a whole run).
	tasks := c.tasksToRun(cmd)
	span := 0.8 * float64(c.s.span(tasks))
	var target int
	var at time.Duration
	switch kind {
	case killEngine, killR:
		d := c.uniform(50*time.Millisecond, time.Duration(span))
		if !sleepOrExit(cl, d) {
			if cl.code == 0 {
				c.s.observe(cl.ended.Sub(cl.started), tasks)
			}
			return fmt.Sprintf("the %s ended before %s", cmd, d.Round(time.Millisecond)), nil, false
		}
		target = cl.pid()
		if kind == killEngine {
			if c.served {
				target = c.engine.pid()
			} else {
				marker := fmt.Sprintf("--parent-pid %d ", cl.pid())
				var pids []int
				if !waitFor(30*time.Second, func() bool { pids = procsMatching("serve", marker); return len(pids) > 0 || cl.exited() }) || len(pids) == 0 {
					return fmt.Sprintf("the %s ended before its engine was seen", cmd), nil, false
				}
				target = pids[0]
			}
		}
	case killTask:
		// The k-th task to start (a run has 6, a resume those from the
		// step it resumes from), a moment after it started.
		k := 1 + c.s.rng.Intn(tasks)
		if c.killK > 0 {
			k = c.killK
		}
		seen := map[string]bool{}
		var last string
		waitFor(2*time.Minute, func() bool {
			for spec := range c.taskSpecs() {
				if !seen[spec] && len(seen) < k {
					seen[spec], last = true, spec
				}
			}
			return len(seen) >= k || cl.exited()
		})
		if len(seen) < k {
			return fmt.Sprintf("the %s ended before its task %d started", cmd, k), nil, false
		}
		if !sleepOrExit(cl, c.uniform(0, 200*time.Millisecond)) {
			return fmt.Sprintf("the %s ended before its task %d could be killed", cmd, k), nil, false
		}
		live := c.taskSpecs()
		pid, ok := live[last]
		if !ok {
			if len(live) == 0 {
				return fmt.Sprintf("the %s's tasks ended before task %d could be killed", cmd, k), nil, false
			}
			for _, spec := range sortedSpecs(live) {
				pid = live[spec]
				break
			}
		}
		target = pid
	}
	// What was completed before the kill: it must survive it.
	if p, err := c.ledger.scan(c.s.want); err != nil {
		problems = append(problems, "lost: "+err.Error())
	} else {
		problems = append(problems, p...)
	}
	at = time.Since(cl.started)
	_ = syscall.Kill(target, syscall.SIGKILL)
	what = fmt.Sprintf("chain %d, %s, %s killed %s into `%s`", c.id, c.mode(), map[string]string{killEngine: "engine", killR: "R client", killTask: "task"}[kind], at.Round(time.Millisecond), cmd)
	if kind == killEngine && c.served {
		c.engine.wait(10 * time.Second)
	}
	code, exited := cl.wait(60 * time.Second)
	if !exited {
		problems = append(problems, "stuck: the R client did not exit within 60 s of the kill:\n"+indent(cl.tail(5)))
		cl.kill()
		cl.wait(10 * time.Second)
	}
	if exited && code == 0 {
		// The kill came too late to matter (the task or run had finished).
		if id, done := c.newestCompleted(); done {
			problems = append(problems, c.compare(id)...)
			c.done = true
		}
	}
	problems = append(problems, c.noOrphans("the "+kind)...)
	if kind == killR && !c.served {
		marker := fmt.Sprintf("--parent-pid %d ", cl.pid())
		if !waitFor(10*time.Second, func() bool { return len(procsMatching("serve", marker)) == 0 }) {
			problems = append(problems, "orphan: the embedded engine outlived its R client by 10 s")
			for _, pid := range procsMatching("serve", marker) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	problems = append(problems, c.settled("after the "+kind)...)
	if kind == killEngine {
		problems = append(problems, c.leftoversGone(target)...)
	}
	problems = append(problems, c.checkLedger()...)
	return what, problems, true
}

// cliArtifact prints an artifact with `metaflow-engine artifact`.
func (c *chain) cliArtifact(e *entry) (string, int) {
	cmd := exec.Command("metaflow-engine", "artifact", e.pathspec(), e.name, "--datastore", c.root)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		return err.Error(), -1
	}
	return string(out), 0
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

func sortedKeys(m map[string]*entry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedSpecs(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
