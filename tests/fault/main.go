// Command fault is the fault-injection suite (make test-fault): it runs a
// tiny foreach flow for real (Rscript clients, metaflow-engine, Rscript
// tasks), and at random points (a fixed seed) kills the engine, the R
// client or a task with SIGKILL, damages completed files (a flipped byte,
// a truncation, another blob's content) and fills the datastore's tmpfs.
// After each injection it checks the invariants:
//
//   - every artifact of every task recorded completed reads back, through
//     the engine, as the content it was recorded with, or (if the injection
//     damaged its file) fails with an error naming it: never a wrong value;
//   - nothing reads "running" once its engine is gone or its run ended, and
//     no task outlives its engine;
//   - resume completes, and its results equal an uninterrupted run's.
//
// Settings: FAULT_SEED (default 20261130), FAULT_N (injections, default 50),
// FAULT_STRICT (known failures that fail the suite: names, or "all"),
// FAULT_DISKFULL=0 (no disk-full injections: no root needed),
// FAULT_KEEP=1 (keep the working folders), FAULT_VERBOSE=1.
// It needs Rscript with the metaflow package and metaflow-engine on PATH,
// and root (to mount the small tmpfs).
package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const flowName = "FaultFlowR"

// The flow under test: a foreach of 3 splits, a join and an end, each
// with small artifacts; deterministic, so every run's artifacts are the
// same blobs.
const flowSource = `library(metaflow)
start <- function(self) { self$xs <- 1:3; self$label <- "fault" }
work  <- function(self) { self$sq <- self$input^2; self$v <- rep(self$input, 500L) }
join  <- function(self, inputs) { self$total <- sum(sapply(inputs, function(i) i$sq)) }
end   <- function(self) { self$final <- self$total * 2 }
metaflow("FaultFlowR") %>%
  step(step = "start", r_function = start, next_step = "work", foreach = "xs") %>%
  step(step = "work", r_function = work, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
`

// heartbeat is the engines' heartbeat interval (seconds): a run whose
// engine is gone reads as failed after datastore.StaleBeats of them.
const heartbeat = 0.2

// staleAfter bounds how long a run of a dead engine may read "running".
const staleAfter = 6*time.Duration(heartbeat*float64(time.Second)) + 5*time.Second

type suite struct {
	seed    int64
	n       int
	rng     *rand.Rand
	tmp     string
	keep    bool
	verbose bool
	strict  map[string]bool
	env     []string // every process's environment (plus per-chain settings)
	tally   *tally
	reader  *reader
	want    results // an uninterrupted run's artifacts
	// perTask is the wall time of an uninterrupted run or resume per task
	// it runs (plus half a task for R and the engine starting).
	perTask time.Duration
	mounts  []string
	chains  int
	// noDiskFull: FAULT_DISKFULL=0, no tmpfs (and no root) needed.
	noDiskFull bool
	begun      time.Time
}

func main() {
	os.Exit(runSuite())
}

func runSuite() int {
	s := &suite{seed: 20261130, n: 50, tally: newTally(), strict: map[string]bool{}, begun: time.Now()}
	if v := os.Getenv("FAULT_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fault: FAULT_SEED must be an integer, got %q\n", v)
			return 2
		}
		s.seed = n
	}
	if v := os.Getenv("FAULT_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "fault: FAULT_N must be a positive integer, got %q\n", v)
			return 2
		}
		s.n = n
	}
	for _, k := range strings.Split(os.Getenv("FAULT_STRICT"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			if _, ok := knownFailures[k]; !ok && k != "all" {
				fmt.Fprintf(os.Stderr, "fault: FAULT_STRICT names no known failure %q (known: %s, or all)\n", k, strings.Join(knownNames(), ", "))
				return 2
			}
			s.strict[k] = true
		}
	}
	s.keep = os.Getenv("FAULT_KEEP") == "1"
	switch v := os.Getenv("FAULT_DISKFULL"); v {
	case "", "1":
	case "0":
		s.noDiskFull = true
	default:
		fmt.Fprintf(os.Stderr, "fault: FAULT_DISKFULL must be 0 or 1, got %q\n", v)
		return 2
	}
	s.verbose = os.Getenv("FAULT_VERBOSE") == "1"
	s.rng = rand.New(rand.NewSource(s.seed))
	if err := s.setup(); err != nil {
		fmt.Fprintln(os.Stderr, "fault:", err)
		s.teardown()
		return 2
	}
	// Ctrl-C: unmount, kill what was started, remove the folders.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "fault: interrupted")
		s.teardown()
		os.Exit(130)
	}()
	err := s.run()
	s.teardown()
	fmt.Println(s.tally.summary(s.seed, time.Since(s.begun).Seconds()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fault:", err)
		return 1
	}
	known := 0
	for _, f := range s.tally.findings {
		fmt.Println(f)
		if strings.HasPrefix(f, "known failure") {
			known++
		}
	}
	if n := s.tally.total(violated); n > 0 {
		fmt.Printf("fault: FAILED: %d injection(s) broke an invariant (seed %d; rerun with FAULT_SEED=%d FAULT_VERBOSE=1)\n", n, s.seed, s.seed)
		return 1
	}
	if s.tally.fired() < s.n {
		fmt.Printf("fault: FAILED: only %d of %d injections happened (the runs ended before the injection points)\n", s.tally.fired(), s.n)
		return 1
	}
	if known > 0 {
		fmt.Printf("fault: ok, with %d known failure(s) of other areas (FAULT_STRICT=all makes them fail)\n", known)
	} else {
		fmt.Println("fault: ok")
	}
	return 0
}

func (s *suite) logf(format string, args ...any) {
	if s.verbose {
		fmt.Printf("%6.1fs "+format+"\n", append([]any{time.Since(s.begun).Seconds()}, args...)...)
	}
}

// setup checks the tools, makes the suite's folder (a short path: engine
// sockets live there) and starts the reader engine.
func (s *suite) setup() error {
	for _, tool := range []string{"Rscript", "metaflow-engine"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH (make install, or PATH=$P/bin:$PATH)", tool)
		}
	}
	if os.Geteuid() != 0 && !s.noDiskFull {
		return fmt.Errorf("the disk-full injections mount a tmpfs: run as root (or leave them out with FAULT_DISKFULL=0)")
	}
	tmp, err := os.MkdirTemp("/tmp", "fault-")
	if err != nil {
		return err
	}
	s.tmp = tmp
	if err := os.MkdirAll(filepath.Join(tmp, "t"), 0o700); err != nil {
		return err
	}
	s.env = cleanEnv(filepath.Join(tmp, "t"), filepath.Join(tmp, "home"))
	if err := os.MkdirAll(filepath.Join(tmp, "home"), 0o700); err != nil {
		return err
	}
	if s.reader, err = startReader(s); err != nil {
		return fmt.Errorf("start the reader engine: %w", err)
	}
	return nil
}

func (s *suite) teardown() {
	if s.reader != nil {
		s.reader.close()
	}
	killStarted()
	for i := len(s.mounts) - 1; i >= 0; i-- {
		unmount(s.mounts[i])
	}
	s.mounts = nil
	if s.tmp != "" && !s.keep {
		os.RemoveAll(s.tmp)
	} else if s.tmp != "" {
		fmt.Println("fault: kept", s.tmp)
	}
}

// cleanEnv is the environment of every process: the caller's, without
// settings that would point flows elsewhere, plus a private temp folder
// and Metaflow home, and the short heartbeat.
func cleanEnv(tmpdir, home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "METAFLOW_") || strings.HasPrefix(k, "AWS_") || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TMPDIR="+tmpdir, "METAFLOW_HOME="+home, "AWS_EC2_METADATA_DISABLED=true",
		"METAFLOW_ENGINE_HEARTBEAT_SECONDS="+strconv.FormatFloat(heartbeat, 'f', -1, 64))
}

// startEngine serves an engine with env on sock (its folder must exist,
// 0700).
func (s *suite) startEngine(dir, sock string, env []string) (*proc, error) {
	p, err := startProc(dir, filepath.Join(dir, fmt.Sprintf("engine-%d.log", time.Now().UnixNano())), env, "metaflow-engine", "serve", "--socket", sock)
	if err != nil {
		return nil, err
	}
	if !waitFor(20*time.Second, func() bool { _, err := os.Stat(sock); return err == nil || p.exited() }) || p.exited() {
		p.kill()
		return nil, fmt.Errorf("the engine did not start: %s", p.tail(5))
	}
	return p, nil
}

// run does the planned injections.
func (s *suite) run() error {
	if err := s.baseline(); err != nil {
		return err
	}
	plan := s.plan()
	s.logf("plan: %v", plan)
	kills, muts, mtr, fills := plan.kills, plan.muts, plan.mutResume, plan.fills
	// First, always: the join task killed, then an input it reads (a
	// split's sq) damaged before the resume, which must not turn it into a
	// value. (Random points reach this only now and then.)
	if len(kills) > 0 && mtr > 0 {
		c, err := s.newChain(false)
		if err != nil {
			return err
		}
		c.killK = 5 // start, 3 splits, join
		i := slices.Index(kills, killTask)
		if i < 0 {
			i = 0
		}
		kind := kills[i]
		left, mtrLeft := c.killChain([]string{kind}, []string{muts[0]})
		kills = append(append(append([]string{}, kills[:i]...), left...), kills[i+1:]...)
		muts = append(muts[1:], mtrLeft...)
		mtr--
		c.close()
	}
	var last *chain
	for len(kills) > 0 || len(fills) > 0 {
		if len(fills) > 0 && (len(kills) == 0 || s.rng.Intn(4) == 0) {
			c, err := s.newChain(true)
			if err != nil {
				return err
			}
			if c.diskFull() {
				fills = fills[1:]
			}
			c.close()
			continue
		}
		c, err := s.newChain(false)
		if err != nil {
			return err
		}
		take := min(3, len(kills))
		var mtrKinds []string
		if mtr > 0 && len(muts) > 0 {
			mtrKinds = []string{muts[0]}
			muts = muts[1:]
			mtr--
		}
		left, mtrLeft := c.killChain(kills[:take], mtrKinds)
		kills = append(append([]string{}, left...), kills[take:]...)
		muts = append(muts, mtrLeft...)
		// Damage the chain's completed files, one at a time.
		for i := 0; i < 3 && len(muts) > 0 && !c.broken; i++ {
			c.mutate(muts[0], "")
			muts = muts[1:]
		}
		if last != nil {
			last.close()
		}
		last = c
		if s.chains > 4*s.n {
			return fmt.Errorf("too many runs ended before their injection point; giving up")
		}
	}
	for len(muts) > 0 && last != nil && !last.broken {
		last.mutate(muts[0], "")
		muts = muts[1:]
	}
	if last != nil {
		last.close()
	}
	return nil
}

type plan struct {
	kills, muts, fills []string
	mutResume          int
}

// plan spreads FAULT_N injections over the kinds: 45% kills (engine, R,
// task), 10% (at least 3) disk-full, the rest damaged files; a quarter of
// those are done to a killed run before it is resumed.
func (s *suite) plan() plan {
	var p plan
	nFill := max(3, s.n/10)
	if s.noDiskFull {
		nFill = 0
	}
	nKill := s.n * 45 / 100
	nMut := max(0, s.n-nFill-nKill)
	for i := 0; i < nKill; i++ {
		p.kills = append(p.kills, []string{killEngine, killR, killTask}[i%3])
	}
	for i := 0; i < nMut; i++ {
		p.muts = append(p.muts, []string{flip, truncate, replace}[i%3])
	}
	for i := 0; i < nFill; i++ {
		p.fills = append(p.fills, diskFull)
	}
	s.rng.Shuffle(len(p.kills), func(i, j int) { p.kills[i], p.kills[j] = p.kills[j], p.kills[i] })
	s.rng.Shuffle(len(p.muts), func(i, j int) { p.muts[i], p.muts[j] = p.muts[j], p.muts[i] })
	p.mutResume = nMut / 4
	return p
}

// baseline runs the flow once, uninterrupted: its artifacts are what
// every resumed run must end with.
func (s *suite) baseline() error {
	c, err := s.newChain(false)
	if err != nil {
		return err
	}
	defer c.close()
	t0 := time.Now()
	cl, err := c.client("run")
	if err != nil {
		return err
	}
	code, ok := cl.wait(3 * time.Minute)
	if !ok || code != 0 {
		cl.kill()
		return fmt.Errorf("the uninterrupted run failed (exit %d):\n%s", code, cl.tail(20))
	}
	dur := time.Since(t0)
	s.perTask = time.Duration(float64(dur) / 6.5)
	ids, err := c.ledger.runIDs()
	if err != nil || len(ids) != 1 {
		return fmt.Errorf("the uninterrupted run left runs %v (%v)", ids, err)
	}
	if s.want, err = c.ledger.resultsOf(ids[0]); err != nil {
		return err
	}
	if len(s.want) != 6 {
		return fmt.Errorf("the uninterrupted run has %d completed tasks, want 6", len(s.want))
	}
	s.logf("baseline: run took %s", dur.Round(time.Millisecond))
	return nil
}

// observe folds the wall time d of an uninterrupted run or resume that
// ran tasks tasks into perTask (the machine's load changes; kills are timed
// within a run's expected span).
func (s *suite) observe(d time.Duration, tasks int) {
	if tasks > 0 {
		s.perTask = (s.perTask + time.Duration(float64(d)/(float64(tasks)+0.5))) / 2
	}
}

// span is how long a run or resume of tasks tasks is expected to take.
func (s *suite) span(tasks int) time.Duration {
	return time.Duration(float64(s.perTask) * (float64(tasks) + 0.5))
}

// record counts an injection's outcome from its problems: none is held;
// problems that are all known failures are known:<name> (unless strict);
// else violated.
func (s *suite) record(kind, what string, problems []string, refusedOK bool) {
	outcome := held
	if refusedOK {
		outcome = refused
	}
	var hard []string
	knownName := ""
	for _, p := range problems {
		if name, ok := classify(p); ok && !s.strict[name] && !s.strict["all"] {
			knownName = name
			continue
		}
		hard = append(hard, p)
	}
	switch {
	case len(hard) > 0:
		outcome = violated
		s.tally.findings = append(s.tally.findings, fmt.Sprintf("VIOLATED after %s (%s):\n  %s", kind, what, strings.Join(hard, "\n  ")))
	case knownName != "":
		outcome = "known:" + knownName
		s.tally.findings = append(s.tally.findings, fmt.Sprintf("known failure %s after %s (%s):\n  %s", knownName, kind, what, strings.Join(problems, "\n  ")))
	}
	s.tally.add(kind, outcome)
	s.logf("%s (%s): %s %v", kind, what, outcome, problems)
}

func knownNames() []string {
	var out []string
	for k := range knownFailures {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func lookPath(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}
