package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// stubbornExec runs the splits of "work" as remote jobs (job-<index>)
// that wait for the cancellation; the jobs in stuck cannot be stopped
// (NotStopped, as the Batch executor returns when TerminateJob keeps
// failing), and none is stopped when the run is abandoned.
type stubbornExec struct {
	*fakeExec
	stuck     map[string]bool
	mu        sync.Mutex
	submitted int
}

func (s *stubbornExec) Run(ctx context.Context, l *Launch) (int, error) {
	if l.Spec.Step != "work" {
		return s.fakeExec.Run(ctx, l)
	}
	id := fmt.Sprintf("job-%d", l.Spec.Index)
	l.Submitted(id, "s3://bucket/"+id)
	l.Started(0)
	s.mu.Lock()
	s.submitted++
	s.mu.Unlock()
	<-ctx.Done()
	switch {
	case Abandoned(ctx):
		return -1, &NotStopped{JobID: id, Err: context.Cause(ctx)}
	case s.stuck[id]:
		return -1, &NotStopped{JobID: id, Err: errors.New("TerminateJob failed for 2s: connection refused")}
	}
	return -1, ctx.Err()
}

func (s *stubbornExec) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submitted
}

// A cancellation counts only the tasks it ended; the jobs it could not
// stop are reported, recorded in the run and their attempts, and named
// with the command that ends them.
func TestCancelReportsJobsLeftRunning(t *testing.T) {
	cases := []struct {
		name    string
		stuck   []string
		abandon bool
		killed  int
		left    []string
		errHas  []string
	}{
		{"all ended", nil, false, 3, nil, []string{"run interrupted: every running task was killed"}},
		{"two could not be stopped", []string{"job-0", "job-2"}, false, 1, []string{"job-0", "job-2"},
			[]string{"2 Fake Cloud job(s) were not stopped (TerminateJob failed for 2s: connection refused)",
				"job-0 (step work, task ", "job-2 (step work, task ", "fakecloud kill --run-id 1"}},
		{"abandoned: every job left running", nil, true, 0, []string{"job-0", "job-1", "job-2"},
			[]string{"its engine stopped the run because the R session that started the run went away", "3 Fake Cloud job(s)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stuck := map[string]bool{}
			for _, id := range tc.stuck {
				stuck[id] = true
			}
			ex := &stubbornExec{fakeExec: &fakeExec{steps: map[string]stepFunc{"start": splits(3)}}, stuck: stuck}
			r, store := newRun(t, foreachGraph(t), &fakeExec{steps: map[string]stepFunc{"start": splits(3)}}, Options{
				MaxWorkers: 4, With: []graph.Decorator{{Name: fakeCloud}},
			})
			r.Executors = registry(t, map[string]Plugin{fakeCloud: &fakePlugin{exec: ex}})
			if err := r.Prepare(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			done := make(chan error)
			go func() { done <- r.Execute(ctx) }()
			deadline := time.Now().Add(10 * time.Second)
			for ex.count() < 3 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if tc.abandon {
				cancel(ErrAbandoned)
			} else {
				cancel(nil)
			}
			err := <-done
			if !IsInterrupted(err) {
				t.Fatalf("want interrupted, got %v", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("run error %q lacks %q", err, s)
				}
			}
			if got := r.Killed(); got != tc.killed {
				t.Errorf("Killed() = %d, want %d", got, tc.killed)
			}
			var left []string
			for _, j := range r.LeftRunning() {
				left = append(left, j.JobID)
			}
			if !sameSet(left, tc.left) {
				t.Errorf("left running %v, want %v", left, tc.left)
			}
			if n := len(r.StoppedJobs()); n != 3 {
				t.Errorf("%d jobs reported, want every one of the 3", n)
			}
			for _, j := range r.StoppedJobs() {
				if j.Ended == contains(tc.left, j.JobID) || j.Executor != "Fake Cloud" || j.Decorator != fakeCloud || j.Step != "work" {
					t.Errorf("job report %+v", j)
				}
				if !j.Ended && j.Error == "" {
					t.Errorf("job %s left without a cause", j.JobID)
				}
			}
			// The records say the same: the run's and each attempt's.
			run, gerr := store.GetRun(bg, "F", r.RunID())
			if gerr != nil {
				t.Fatal(gerr)
			}
			var recorded []string
			for _, j := range run.JobsLeftRunning {
				recorded = append(recorded, j.JobID)
			}
			if run.Status != datastore.StatusFailed || !sameSet(recorded, tc.left) || run.Error != err.Error() {
				t.Errorf("run record: status %s, left %v, error %q", run.Status, recorded, run.Error)
			}
			ids, _ := store.ListTasks(bg, "F", r.RunID(), "work")
			if len(ids) != 3 {
				t.Fatalf("%d work tasks recorded", len(ids))
			}
			for _, id := range ids {
				task, terr := store.GetTask(bg, "F", r.RunID(), "work", id)
				if terr != nil {
					t.Fatal(terr)
				}
				a := task.Attempts[len(task.Attempts)-1]
				want := contains(tc.left, a.JobID)
				if a.JobLeftRunning != want || task.Status != datastore.StatusFailed ||
					want == strings.HasPrefix(a.Error, "killed") {
					t.Errorf("task %s attempt: %+v", task.TaskID, a)
				}
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
