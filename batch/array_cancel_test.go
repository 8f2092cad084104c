package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// fakeBatch is the part of the AWS Batch API that followers use
// (DescribeJobs, ListJobs by array and state, TerminateJob), over HTTP for
// the SDK. Like AWS, terminating a parent array job ends its children.
type fakeBatch struct {
	mu     sync.Mutex
	status map[string]State    // job id -> state
	kids   map[string][]string // parent -> children
	refuse map[string]bool     // TerminateJob answers ClientException
	stuck  map[string]bool     // children that outlive their parent
	calls  map[string]int      // TerminateJob calls per job
}

func newFakeBatch(parent string, n int) *fakeBatch {
	f := &fakeBatch{status: map[string]State{parent: StateRunning}, kids: map[string][]string{},
		refuse: map[string]bool{}, stuck: map[string]bool{}, calls: map[string]int{}}
	for i := range n {
		id := fmt.Sprintf("%s:%d", parent, i)
		f.kids[parent] = append(f.kids[parent], id)
		f.status[id] = StateRunning
	}
	return f
}

func (f *fakeBatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Jobs       []string `json:"jobs"`
		JobID      string   `json:"jobId"`
		ArrayJobID string   `json:"arrayJobId"`
		JobStatus  string   `json:"jobStatus"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out any
	switch r.URL.Path {
	case "/v1/describejobs":
		out = f.describe(in.Jobs)
	case "/v1/listjobs":
		out = f.list(in.ArrayJobID, State(in.JobStatus))
	case "/v1/terminatejob":
		f.calls[in.JobID]++
		if f.refuse[in.JobID] {
			w.Header().Set("X-Amzn-ErrorType", "ClientException")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"not allowed"}`))
			return
		}
		f.end(in.JobID)
		out = map[string]any{}
	default:
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeBatch) describe(ids []string) any {
	var jobs []map[string]any
	for _, id := range ids {
		d := map[string]any{"jobId": id, "jobName": "j", "status": f.status[id]}
		if kids := f.kids[id]; kids != nil {
			sum := map[State]int{}
			for _, k := range kids {
				sum[f.status[k]]++
			}
			d["arrayProperties"] = map[string]any{"size": len(kids), "statusSummary": sum}
		}
		jobs = append(jobs, d)
	}
	return map[string]any{"jobs": jobs}
}

func (f *fakeBatch) list(parent string, s State) any {
	var jobs []map[string]any
	for _, k := range f.kids[parent] {
		if f.status[k] == s {
			jobs = append(jobs, map[string]any{"jobId": k, "jobName": "j", "status": s})
		}
	}
	return map[string]any{"jobSummaryList": jobs}
}

// end terminates id and, for a parent, its children that are not stuck.
func (f *fakeBatch) end(id string) {
	f.status[id] = StateFailed
	for _, k := range f.kids[id] {
		if !f.stuck[k] {
			f.status[k] = StateFailed
		}
	}
}

func (f *fakeBatch) callsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

// followerExecutor is an executor whose Batch client talks to url,
// polling every poll.
func followerExecutor(t *testing.T, c *Client, poll time.Duration) *Executor {
	t.Helper()
	return &Executor{
		cfg:  Config{TerminateTimeout: 2 * time.Second, LogInterval: time.Minute, PollInterval: poll},
		c:    c,
		poll: &poller{c: c, interval: poll, watch: map[string]*watcher{}},
	}
}

// setCancelGrace sets ArrayCancelGrace for one test.
func setCancelGrace(t testing.TB, d time.Duration) {
	old := ArrayCancelGrace
	ArrayCancelGrace = d
	t.Cleanup(func() { ArrayCancelGrace = old })
}

// cancelArray follows the children of array job parent (one follower each,
// as runChild does), stops them with stop once every one has seen its
// child RUNNING (or, with frozen, a few poll intervals: frozen jobs stay
// SUBMITTED), and returns each follower's error, how long the followers
// took to return after stop and what they said.
func cancelArray(ctx context.Context, t *testing.T, e *Executor, parent string, n int, frozen bool, stop func()) ([]error, time.Duration, string) {
	t.Helper()
	a := newArrayJob(parent, n)
	var (
		mu      sync.Mutex
		lines   []string
		running sync.WaitGroup
	)
	running.Add(n)
	errs := make([]error, n)
	var done sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("%s:%d", parent, i)
		var once sync.Once
		say := func(format string, args ...any) {
			line := fmt.Sprintf(format, args...)
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
			if strings.HasSuffix(line, " is RUNNING.") {
				once.Do(running.Done)
			}
		}
		done.Add(1)
		go func() {
			defer done.Done()
			_, errs[i] = e.wait(ctx, id, say, func(time.Duration) string { return "" }, nil, a)
		}()
	}
	if frozen {
		time.Sleep(3 * e.poll.interval)
	} else {
		running.Wait()
	}
	t0 := time.Now()
	stop()
	done.Wait()
	took := time.Since(t0)
	return errs, took, strings.Join(lines, "\n")
}

// A cancelled array fan-out costs one TerminateJob where Batch ends the
// children with their parent, and one more for each child that it did not
// end (or every child when the parent's TerminateJob failed); a child is
// reported stopped only when it was seen ended or its own call succeeded.
func TestArrayCancelTerminatesThroughParent(t *testing.T) {
	const (
		n      = 20
		parent = "arr-1"
		grace  = time.Second
		poll   = 10 * time.Millisecond
	)
	setCancelGrace(t, grace)
	kid := func(i int) string { return fmt.Sprintf("%s:%d", parent, i) }
	cases := []struct {
		name    string
		timeout bool // the attempts' own deadline, not a cancelled run
		refuse  []string
		stuck   []string
		calls   map[string]int // TerminateJob calls per job (others: none)
		left    []string       // children reported not stopped
		graced  bool           // the followers waited out the grace
	}{
		{name: "Batch ends the children with their parent",
			calls: map[string]int{parent: 1}},
		{name: "one child outlives its parent: terminated after the grace",
			stuck: []string{kid(3)}, calls: map[string]int{parent: 1, kid(3): 1}, graced: true},
		{name: "a child outlives its parent and its TerminateJob is refused: left running",
			stuck: []string{kid(3)}, refuse: []string{kid(3)}, calls: map[string]int{parent: 1, kid(3): 1},
			left: []string{kid(3)}, graced: true},
		{name: "the parent's TerminateJob refused: every child terminated at once",
			refuse: []string{parent}, calls: allCalls(parent, n, 1, 1)},
		{name: "the parent's and a child's TerminateJob refused: that child left running",
			refuse: []string{parent, kid(7)}, calls: allCalls(parent, n, 1, 1), left: []string{kid(7)}},
		{name: "the attempts timed out: each ends its own child, never the siblings' parent",
			timeout: true, calls: allCalls(parent, n, 0, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBatch(parent, n)
			for _, id := range tc.refuse {
				fb.refuse[id] = true
			}
			for _, id := range tc.stuck {
				fb.stuck[id] = true
			}
			srv := httptest.NewServer(fb)
			defer srv.Close()
			c := NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{},
				BaseEndpoint: aws.String(srv.URL)}, Options{})
			e := followerExecutor(t, c, poll)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop := cancel
			if tc.timeout {
				x := &expiring{Context: context.Background(), done: make(chan struct{})}
				ctx, stop = x, x.expire
			}
			c.ResetCalls()
			errs, took, console := cancelArray(ctx, t, e, parent, n, false, stop)

			total := 0
			for id := range fb.status {
				want := tc.calls[id]
				total += want
				if got := fb.callsOf(id); got != want {
					t.Errorf("job %s: %d TerminateJob calls, want %d", id, got, want)
				}
			}
			if got := c.Calls()["Batch.TerminateJob"]; got != total {
				t.Errorf("%d TerminateJob calls counted, want %d", got, total)
			}
			t.Logf("cancel of %d children: %d TerminateJob calls in %s", n, total, took.Round(time.Millisecond))
			left := map[string]bool{}
			for _, id := range tc.left {
				left[id] = true
			}
			for i, err := range errs {
				var ns *scheduler.NotStopped
				switch {
				case left[kid(i)] && !errors.As(err, &ns):
					t.Errorf("child %d: %v, want NotStopped: its job was never stopped", i, err)
				case !left[kid(i)] && (errors.As(err, &ns) || !errors.Is(err, ctx.Err())):
					t.Errorf("child %d: %v, want %v (stopped)", i, err, ctx.Err())
				}
			}
			if tc.graced != (took >= grace) {
				t.Errorf("followers returned in %s, grace %s: waited it out %v, want %v", took, grace, took >= grace, tc.graced)
			}
			if t.Failed() {
				t.Logf("console:\n%s", console)
			}
		})
	}
}

// allCalls is parentCalls TerminateJob calls for parent and kidCalls for
// each of its n children.
func allCalls(parent string, n, parentCalls, kidCalls int) map[string]int {
	m := map[string]int{parent: parentCalls}
	for i := range n {
		m[fmt.Sprintf("%s:%d", parent, i)] = kidCalls
	}
	return m
}

// expiring is a context whose deadline passes when expire is called, as an
// attempt's timeout decorator does.
type expiring struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func (x *expiring) Done() <-chan struct{} { return x.done }

func (x *expiring) Err() error {
	select {
	case <-x.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (x *expiring) expire() { x.once.Do(func() { close(x.done) }) }
