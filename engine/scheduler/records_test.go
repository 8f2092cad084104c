package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// recordingStore notes the status of every task record written.
type recordingStore struct {
	datastore.Store
	mu     sync.Mutex
	writes map[string][]string // step -> statuses, in order
}

func (s *recordingStore) PutTask(ctx context.Context, t *datastore.Task) error {
	s.mu.Lock()
	s.writes[t.Step] = append(s.writes[t.Step], t.Status)
	s.mu.Unlock()
	return s.Store.PutTask(ctx, t)
}

// A task that ends before RunningRecordAfter is recorded once, completed
// with its artifact index; a longer one is also recorded while it runs,
// with its pid, where readers see it.
func TestRunningRecordOnlyForLongerTasks(t *testing.T) {
	defer func(d time.Duration) { RunningRecordAfter = d }(RunningRecordAfter)
	RunningRecordAfter = 50 * time.Millisecond
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	var r *Run
	var seen *datastore.Task
	ex := &fakeExec{steps: map[string]stepFunc{
		"start": func(s *TaskSpec) (map[string][]byte, int, int) {
			deadline := time.Now().Add(5 * time.Second)
			for seen == nil && time.Now().Before(deadline) {
				if task, err := r.Store.GetTask(bg, "F", s.RunID, "start", s.TaskID); err == nil {
					seen = task
				}
				time.Sleep(10 * time.Millisecond)
			}
			return map[string][]byte{"x": []byte("1")}, -1, 0
		},
		"end": func(s *TaskSpec) (map[string][]byte, int, int) { return map[string][]byte{"y": []byte("2")}, -1, 0 },
	}}
	r, store := newRun(t, g, ex, Options{})
	rec := &recordingStore{Store: store, writes: map[string][]string{}}
	r.Store = rec
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.Status != datastore.StatusRunning || seen.Attempts[0].PID != 1000 {
		t.Fatalf("a running task's record, as read while it ran: %+v", seen)
	}
	want := map[string][]string{
		"start": {datastore.StatusRunning, datastore.StatusCompleted},
		"end":   {datastore.StatusCompleted},
	}
	for step, w := range want {
		if got := rec.writes[step]; len(got) != len(w) || got[0] != w[0] || got[len(got)-1] != w[len(w)-1] {
			t.Errorf("records of %s: %v, want %v", step, got, w)
		}
	}
	for _, step := range []string{"start", "end"} {
		ids, _ := store.ListTasks(bg, "F", r.RunID(), step)
		arts, err := store.GetArtifacts(bg, "F", r.RunID(), step, ids[0])
		if err != nil || len(arts) == 0 {
			t.Errorf("artifacts of %s: %v, %v", step, arts, err)
		}
	}
	if arts, _ := store.GetArtifacts(bg, "F", r.RunID(), "end", "2"); arts["x"].SHA == "" || arts["y"].SHA == "" {
		t.Errorf("end's index holds what it inherited and what it made: %v", arts)
	}
}
