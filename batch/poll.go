package batch

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// wait follows a job until it is done or ctx is cancelled (then the job is
// terminated: through its parent when arr is set, see cancelJob). While the
// job is RUNNING it calls running every LogInterval.
func (e *Executor) wait(ctx context.Context, id string, say func(string, ...any), stuck func(time.Duration) string,
	running func(context.Context), arr *arrayJob) (JobStatus, error) {
	w := e.poll.add(id)
	defer e.poll.remove(id)
	last := StateSubmitted
	rw := runnableWatch{after: runnableWarnAfter()}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	logTick := time.NewTicker(e.cfg.LogInterval)
	defer logTick.Stop()
	for {
		select {
		case <-logTick.C:
			if last == StateRunning && running != nil {
				running(ctx)
			}
		case now := <-tick.C:
			if d, warn := rw.check(last, now); warn {
				say("%s", stuck(d))
			}
		case <-ctx.Done():
			if scheduler.Abandoned(ctx) {
				// The client went away without asking to cancel: the job
				// runs on, bounded by its own timeout (batchTimeout).
				return JobStatus{}, &scheduler.NotStopped{JobID: id, Err: context.Cause(ctx)}
			}
			return e.cancelJob(ctx, w, id, last, say, arr)
		case err := <-w.err:
			lost := fmt.Errorf("follow Batch job %s: %w", id, err)
			if terr := e.terminate(id, "metaflow: the engine lost track of the job", say); terr != nil {
				return JobStatus{}, &scheduler.NotStopped{JobID: id, Err: fmt.Errorf("%v; terminating it failed: %w", lost, terr)}
			}
			return JobStatus{}, fmt.Errorf("%w (the job was terminated)", lost)
		case st := <-w.st:
			if st.Status != last {
				say("Batch job %s is %s.", id, st.Status)
				last = st.Status
			}
			if d, warn := rw.check(last, time.Now()); warn {
				say("%s", stuck(d))
			}
			if st.Status.Done() {
				return st, nil
			}
		}
	}
}

// jobEndWait bounds the wait for a terminated job to end, so that the
// logs its runner uploads on the way out can be fetched.
const jobEndWait = 15 * time.Second

// awaitDone waits until the poller reports w's job done, at most d.
func awaitDone(w *watcher, d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case st := <-w.st:
			if st.Status.Done() {
				return
			}
		case <-w.err:
			return
		case <-deadline:
			return
		}
	}
}

// poller follows every job in flight, shared by all running tasks: one
// DescribeJobs per 100 jobs per interval, where an array job counts once
// (its parent) whatever its number of children: the children are listed
// (ListJobs by state, 1,000 per call) only when the parent's count of
// children by state changed.
type poller struct {
	c        *Client
	interval time.Duration
	// summary is the last statusSummary seen of each array job followed
	// (used by the loop only).
	summary map[string]map[State]int

	mu      sync.Mutex
	watch   map[string]*watcher
	running bool
}

// watcher receives the latest status of one job, or an error when
// DescribeJobs has failed for maxPollFailures intervals in a row.
type watcher struct {
	st  chan JobStatus
	err chan error
}

const maxPollFailures = 60

func (p *poller) add(id string) *watcher {
	w := &watcher{st: make(chan JobStatus, 1), err: make(chan error, 1)}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watch[id] = w
	if !p.running {
		p.running = true
		go p.loop()
	}
	return w
}

func (p *poller) remove(id string) {
	p.mu.Lock()
	delete(p.watch, id)
	p.mu.Unlock()
}

func (p *poller) loop() {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	failures := 0
	for range t.C {
		p.mu.Lock()
		ids := make([]string, 0, len(p.watch))
		for id := range p.watch {
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err := p.statuses(ctx, ids)
		cancel()
		if err != nil {
			// Transient, most likely: the next tick tries again.
			if failures++; failures >= maxPollFailures {
				p.mu.Lock()
				for _, w := range p.watch {
					select {
					case w.err <- err:
					default:
					}
				}
				p.mu.Unlock()
				failures = 0
			}
			continue
		}
		failures = 0
		p.mu.Lock()
		for id, s := range st {
			if w, ok := p.watch[id]; ok {
				select { // keep only the latest status
				case <-w.st:
				default:
				}
				w.st <- s
			}
		}
		p.mu.Unlock()
	}
}

// runnableWatch tells, once, when a job has been RUNNABLE for too long.
type runnableWatch struct {
	after  time.Duration
	since  time.Time
	warned bool
}

func (w *runnableWatch) check(state State, now time.Time) (time.Duration, bool) {
	if state != StateRunnable {
		w.since = time.Time{}
		return 0, false
	}
	if w.since.IsZero() {
		w.since = now
	}
	d := now.Sub(w.since)
	if w.warned || d < w.after {
		return d, false
	}
	w.warned = true
	return d, true
}

// runnableWarnAfter is METAFLOW_BATCH_RUNNABLE_WARNING (seconds), default 5 minutes.
func runnableWarnAfter() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("METAFLOW_BATCH_RUNNABLE_WARNING")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return 5 * time.Minute
}

// runnableWarning explains why a job may be stuck. CheckQueue already refused
// requests no compute environment could ever run, so what is left is capacity.
func runnableWarning(id, queue string, res Resources, d time.Duration) string {
	return fmt.Sprintf("Batch job %s has been RUNNABLE for %s: it asks for %s, which the compute "+
		"environments of queue %s can run in principle, so they are likely at their maxvCpus, "+
		"still scaling up, or unable to get instances of that size (check their state, "+
		"maxvCpus, instance types and service limits, or ask for less with resources())",
		id, d.Round(time.Second), res, queue)
}

// statuses is the latest status of each job of ids that Batch knows: single
// jobs are described; array children ("<parent>:<index>") are found
// through their parent (see poller).
func (p *poller) statuses(ctx context.Context, ids []string) (map[string]JobStatus, error) {
	var query []string
	kids := map[string][]string{} // parent -> its children followed
	for _, id := range ids {
		if parent := parentOf(id); parent != id {
			if kids[parent] == nil {
				query = append(query, parent)
			}
			kids[parent] = append(kids[parent], id)
			continue
		}
		query = append(query, id)
	}
	st, err := p.c.Describe(ctx, query)
	if err != nil {
		return nil, err
	}
	if p.summary == nil {
		p.summary = map[string]map[State]int{}
	}
	for parent := range p.summary {
		if kids[parent] == nil {
			delete(p.summary, parent)
		}
	}
	for parent, children := range kids {
		ps, ok := st[parent]
		delete(st, parent)
		if !ok || ps.Children == nil {
			continue // its children do not exist yet
		}
		list := changedStates(p.summary[parent], ps.Children)
		if len(list) == 0 {
			continue
		}
		want := make(map[string]bool, len(children))
		for _, id := range children {
			want[id] = true
		}
		for _, s := range list {
			cs, err := p.c.Children(ctx, parent, s)
			if err != nil {
				return nil, err
			}
			for _, c := range cs {
				if want[c.ID] {
					st[c.ID] = c
				}
			}
		}
		p.summary[parent] = ps.Children
	}
	return st, nil
}

// changedStates are the states whose children must be listed to learn what
// changed from summary prev to cur: those whose count changed (listed if
// any child is in them) and, when anything changed, RUNNING (a child may
// have started as another ended, leaving its count alone; a running child's
// logs are followed). Swaps among the states before RUNNING can go unseen
// until a count changes: they only delay the RUNNABLE warning.
func changedStates(prev, cur map[State]int) []State {
	changed := len(prev) == 0
	for s, n := range cur {
		if n != prev[s] {
			changed = true
		}
	}
	for s, n := range prev {
		if _, ok := cur[s]; !ok && n != 0 {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	var out []State
	for _, s := range []State{StateSubmitted, StatePending, StateRunnable, StateStarting, StateRunning, StateSucceeded, StateFailed} {
		if n := cur[s]; n > 0 && (n != prev[s] || s == StateRunning) {
			out = append(out, s)
		}
	}
	return out
}
