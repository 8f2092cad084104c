package scheduler

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// faultStore is a local store whose writes fail as fault says (nil: none).
// The errors are what the OS gives (ENOSPC, EROFS, EIO) in a *fs.PathError.
type faultStore struct {
	*datastore.Local
	mu    sync.Mutex
	fault func(op, step, status string) error
}

func (s *faultStore) set(f func(op, step, status string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

func (s *faultStore) check(op, step, status string) error {
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(op, step, status)
}

func (s *faultStore) PutRun(ctx context.Context, run *datastore.Run) error {
	if err := s.check("PutRun", "", run.Status); err != nil {
		return err
	}
	return s.Local.PutRun(ctx, run)
}

func (s *faultStore) PutTask(ctx context.Context, t *datastore.Task) error {
	if err := s.check("PutTask", t.Step, t.Status); err != nil {
		return err
	}
	return s.Local.PutTask(ctx, t)
}

func (s *faultStore) PutFile(ctx context.Context, flow, path string) (datastore.Artifact, error) {
	if err := s.check("PutFile", "", ""); err != nil {
		return datastore.Artifact{}, err
	}
	return s.Local.PutFile(ctx, flow, path)
}

func osErr(errno syscall.Errno) error {
	return &fs.PathError{Op: "write", Path: "/datastore/.tmp-1", Err: errno}
}

func linearGraph(t *testing.T) *graph.Graph {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// shortEndRetry makes the engine try a run's unrecorded end again quickly.
func shortEndRetry(t *testing.T) {
	wait := EndRetryWait
	EndRetryWait = 10 * time.Millisecond
	t.Cleanup(func() { EndRetryWait = wait })
}

// A write of the engine that fails (the datastore full, read-only or
// failing) fails its task with that cause on the console, the run ends
// failed with it, and no record reads "running"; where the records
// themselves cannot be written, readers still see failed, and the run's end
// is written once the datastore takes writes again.
func TestWriteFailuresFailTheTaskAndTheRun(t *testing.T) {
	shortEndRetry(t)
	cases := []struct {
		name  string
		fault func(op, step, status string) error
		// cause is in the run's error, the console and start's record.
		cause string
		// sticky: every write fails from the first fault on, the records
		// included, until the test lifts it.
		sticky bool
	}{
		{"a blob (EIO)", func(op, _, _ string) error {
			if op == "PutFile" {
				return osErr(syscall.EIO)
			}
			return nil
		}, "store artifact x of F/1/start/1: write /datastore/.tmp-1: input/output error", false},
		{"the task's end (EROFS)", func(op, step, status string) error {
			if op == "PutTask" && step == "start" && status == datastore.StatusCompleted {
				return osErr(syscall.EROFS)
			}
			return nil
		}, "record the end of task F/1/start/1: write /datastore/.tmp-1: read-only file system", false},
		{"every write from the task's end on (ENOSPC)", func(op, step, status string) error {
			if op == "PutTask" && step == "start" && status == datastore.StatusCompleted {
				return osErr(syscall.ENOSPC)
			}
			return nil
		}, "record the end of task F/1/start/1: write /datastore/.tmp-1: no space left on device", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := &fakeExec{steps: map[string]stepFunc{"start": func(*TaskSpec) (map[string][]byte, int, int) {
				return map[string][]byte{"x": []byte("x")}, -1, 0
			}}}
			r, local := newRun(t, linearGraph(t), ex, Options{})
			store := &faultStore{Local: local}
			r.Store = store
			var mu sync.Mutex
			var lines []string
			r.Emit = func(e Event) {
				mu.Lock()
				defer mu.Unlock()
				lines = append(lines, e.Line)
			}
			var full sync.Once
			var fullNow bool
			store.set(func(op, step, status string) error {
				err := tc.fault(op, step, status)
				if tc.sticky {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						full.Do(func() { fullNow = true })
					}
					if fullNow {
						return osErr(syscall.ENOSPC)
					}
				}
				return err
			})
			if err := r.Prepare(bg); err != nil {
				t.Fatal(err)
			}
			err := r.Execute(bg)
			if err == nil || !strings.Contains(err.Error(), "step start failed (task 1/start/1): "+tc.cause) {
				t.Fatalf("run error = %v, want the cause %q", err, tc.cause)
			}
			if errors.Is(err, context.Canceled) {
				t.Fatal("a write failure reads as an interrupt")
			}
			if len(ex.stepCalls("end")) != 0 {
				t.Fatal("end ran after start failed")
			}
			mu.Lock()
			console := strings.Join(lines, "\n")
			mu.Unlock()
			if !strings.Contains(console, "[1/start/1 (pid 1000)] Task failed: "+tc.cause) {
				t.Fatalf("the console does not name the cause %q:\n%s", tc.cause, console)
			}

			// What readers see: the records settled (datastore.Settle).
			read := func() (*datastore.Run, *datastore.Task) {
				t.Helper()
				run, err := local.GetRun(bg, "F", "1")
				if err != nil {
					t.Fatal(err)
				}
				task, err := local.GetTask(bg, "F", "1", "start", "1")
				if errors.Is(err, fs.ErrNotExist) && tc.sticky {
					// Short, it was never recorded running (RunningRecordAfter)
					// and its end could not be: there is no task to read.
					datastore.Settle(time.Now(), run)
					return run, &datastore.Task{Status: datastore.StatusFailed,
						Attempts: []datastore.Attempt{{Error: run.Error}}}
				}
				if err != nil {
					t.Fatal(err)
				}
				datastore.Settle(time.Now(), run, task)
				return run, task
			}
			run, task := read()
			if run.Status != datastore.StatusFailed || !strings.Contains(run.Error, tc.cause) {
				t.Fatalf("run reads %s (%q), want failed with the cause", run.Status, run.Error)
			}
			if task.Status != datastore.StatusFailed || !strings.Contains(task.Attempts[0].Error, tc.cause) {
				t.Fatalf("task reads %s (%+v), want failed with the cause", task.Status, task.Attempts)
			}
			if !tc.sticky {
				return
			}
			// The disk is still full: on disk both still say running...
			onDisk, _ := local.GetRun(bg, "F", "1")
			if onDisk.Status != datastore.StatusRunning {
				t.Fatalf("the run's end was written on a full disk: %s", onDisk.Status)
			}
			if !strings.Contains(console, "Warning: record the end of run F/1: write /datastore/.tmp-1: no space left on device") {
				t.Fatalf("the console does not say the run's end was not recorded:\n%s", console)
			}
			// ...until space comes back: the engine writes the run's end.
			store.set(nil)
			if onDisk = waitRecorded(t, local, "F", "1"); onDisk.Status != datastore.StatusFailed || !strings.Contains(onDisk.Error, tc.cause) {
				t.Fatalf("the run's end was not written once space came back: %s %q", onDisk.Status, onDisk.Error)
			}
			// Recorded, it is read from the record (another process sees the
			// same), and the task recorded running reads failed with it.
			run, task = read()
			if run.Status != datastore.StatusFailed || task.Status != datastore.StatusFailed {
				t.Fatalf("after the end was recorded: run %s, task %s", run.Status, task.Status)
			}
		})
	}
}

// A run that completed but whose end cannot be recorded is failed: what the
// user is told is what readers see.
func TestCompletedRunWhoseEndIsNotRecordedFails(t *testing.T) {
	shortEndRetry(t)
	r, local := newRun(t, linearGraph(t), &fakeExec{}, Options{})
	store := &faultStore{Local: local}
	r.Store = store
	if err := r.Prepare(bg); err != nil {
		t.Fatal(err)
	}
	store.set(func(op, _, status string) error {
		if op == "PutRun" && status != datastore.StatusRunning {
			return osErr(syscall.EIO)
		}
		return nil
	})
	err := r.Execute(bg)
	const want = "record the end of run F/1: write /datastore/.tmp-1: input/output error"
	if err == nil || err.Error() != want {
		t.Fatalf("run error = %v, want %q", err, want)
	}
	run, _ := local.GetRun(bg, "F", "1")
	datastore.Settle(time.Now(), run)
	if run.Status != datastore.StatusFailed || run.Error != want {
		t.Fatalf("run reads %s %q", run.Status, run.Error)
	}
	store.set(nil)
	if run = waitRecorded(t, local, "F", "1"); run.Status != datastore.StatusFailed || run.Error != want {
		t.Fatalf("the run's end was not written once the store took writes: %s %q", run.Status, run.Error)
	}
}

// waitRecorded waits (at most 10 s) until the run's record is no longer
// "running" on disk, and returns it as recorded.
func waitRecorded(t *testing.T, store datastore.Store, flow, runID string) *datastore.Run {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, err := store.GetRun(bg, flow, runID)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != datastore.StatusRunning || time.Now().After(deadline) {
			return run
		}
		time.Sleep(10 * time.Millisecond)
	}
}
