package scheduler

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/internal/testfs"
)

// A datastore on a real tmpfs that fills up or is remounted read-only
// between two steps: the next task fails with the OS's cause on the
// console, the run fails with it, nothing reads "running", and the run's
// end, not writable then, is written once the disk takes writes again.
func TestDatastoreFullOrReadOnlyBetweenSteps(t *testing.T) {
	shortEndRetry(t)
	cases := []struct {
		name  string
		cause string
		// break_ runs when start has finished; repair undoes it.
		break_ func(t *testing.T, dir string) (repair func() error)
	}{
		{"full", "no space left on device", func(t *testing.T, dir string) func() error {
			filler, err := testfs.Fill(dir)
			if err != nil {
				t.Error(err)
			}
			return func() error { return os.Remove(filler) }
		}},
		{"read-only", "read-only file system", func(t *testing.T, dir string) func() error {
			if err := testfs.ReadOnly(dir, true); err != nil {
				t.Error(err)
			}
			return func() error { return testfs.ReadOnly(dir, false) }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := testfs.Tmpfs(t, 1<<20)
			ex := &fakeExec{steps: map[string]stepFunc{"start": func(*TaskSpec) (map[string][]byte, int, int) {
				return map[string][]byte{"x": []byte("x")}, -1, 0
			}}}
			r, _ := newRun(t, linearGraph(t), ex, Options{})
			store := datastore.NewLocal(filepath.Join(dir, ".metaflow"))
			r.Store = store
			var mu sync.Mutex
			var lines []string
			var repair func() error
			// The console line of start's end comes before end is launched.
			r.Emit = func(e Event) {
				if strings.Contains(e.Line, "[1/start/1 (pid 1000)] Task finished successfully.") {
					repair = tc.break_(t, dir)
				}
				mu.Lock()
				defer mu.Unlock()
				lines = append(lines, e.Line)
			}
			if err := r.Prepare(bg); err != nil {
				t.Fatal(err)
			}
			err := r.Execute(bg)
			if repair == nil {
				t.Fatalf("start did not finish: %v", err)
			}
			defer repair()
			if err == nil || !strings.HasPrefix(err.Error(), "step end failed (task 1/end/2): ") || !strings.Contains(err.Error(), tc.cause) {
				t.Fatalf("run error = %v, want end failed with %q", err, tc.cause)
			}
			mu.Lock()
			console := strings.Join(lines, "\n")
			mu.Unlock()
			named := false
			for _, l := range lines {
				named = named || strings.Contains(l, "[1/end/2 (pid ") && strings.Contains(l, "] Task failed: ") && strings.Contains(l, tc.cause)
			}
			if !named {
				t.Fatalf("the console does not name the cause:\n%s", console)
			}
			// Nothing reads running: the run (ended here, not recorded)...
			run, err := store.GetRun(bg, "F", "1")
			if err != nil {
				t.Fatal(err)
			}
			// (On the full disk the space end's staged files held may take
			// the run's end: then it is recorded failed.)
			if run.Status != datastore.StatusRunning && (tc.name != "full" || run.Status != datastore.StatusFailed) {
				t.Fatalf("the run's end was written on a broken disk: %s", run.Status)
			}
			datastore.Settle(time.Now(), run)
			if run.Status != datastore.StatusFailed || !strings.Contains(run.Error, tc.cause) {
				t.Fatalf("the run reads %s %q", run.Status, run.Error)
			}
			// ...and its tasks: start completed; end failed, whether its
			// record could be written (the space start's staged outputs
			// held is free again when end starts) or not.
			tasksRead := func(run *datastore.Run) {
				t.Helper()
				for _, step := range []string{"start", "end"} {
					ids, err := store.ListTasks(bg, "F", "1", step)
					if err != nil {
						t.Fatal(err)
					}
					for _, id := range ids {
						task, err := store.GetTask(bg, "F", "1", step, id)
						if err != nil {
							t.Fatal(err)
						}
						datastore.Settle(time.Now(), run, task)
						want := map[string]string{"start": datastore.StatusCompleted, "end": datastore.StatusFailed}[step]
						if task.Status != want || step == "end" && !strings.Contains(task.Attempts[len(task.Attempts)-1].Error, tc.cause) {
							t.Fatalf("task %s/%s reads %s %+v; want %s with the cause", step, id, task.Status, task.Attempts, want)
						}
					}
				}
			}
			tasksRead(run)
			if err := repair(); err != nil {
				t.Fatal(err)
			}
			repair = func() error { return nil }
			if run = waitRecorded(t, store, "F", "1"); run.Status != datastore.StatusFailed || !strings.Contains(run.Error, tc.cause) {
				t.Fatalf("the run's end was not written once the disk was repaired: %s %q", run.Status, run.Error)
			}
			tasksRead(run) // as another process reads them
		})
	}
}

// A task that fills the disk with an output and removes it before it fails
// (as the runtime does, to free the space): the failure's record is written
// even when the prehasher had that output open, as it follows a task's
// outputs while they grow (its files are closed before the record).
func TestFailureRecordedAfterAnOutputFilledTheDisk(t *testing.T) {
	old := datastore.PrehashFirstLook
	datastore.PrehashFirstLook = time.Millisecond
	defer func() { datastore.PrehashFirstLook = old }()
	dir := testfs.Tmpfs(t, 1<<20)
	ex := &fakeExec{steps: map[string]stepFunc{"start": func(s *TaskSpec) (map[string][]byte, int, int) {
		path := filepath.Join(s.OutputDir, "big.mpk")
		f, err := os.Create(path)
		if err != nil {
			t.Error(err)
			return nil, -1, 1
		}
		defer f.Close()
		chunk := make([]byte, 64<<10)
		f.Write(chunk)
		// Wait until the prehasher holds it open too (a second descriptor
		// of this process on the file), or the test would not test it.
		for deadline := time.Now().Add(10 * time.Second); openCount(path) < 2; {
			if time.Now().After(deadline) {
				t.Error("the prehasher never opened the output")
				return nil, -1, 1
			}
			time.Sleep(5 * time.Millisecond)
		}
		for {
			if _, err := f.Write(chunk); err != nil {
				break // full
			}
		}
		os.Remove(path)
		return nil, -1, 1
	}}}
	r, _ := newRun(t, linearGraph(t), ex, Options{})
	store := datastore.NewLocal(filepath.Join(dir, ".metaflow"))
	r.Store = store
	if err := r.Prepare(bg); err != nil {
		t.Fatal(err)
	}
	if err := r.Execute(bg); err == nil {
		t.Fatal("the run succeeded")
	}
	task, err := store.GetTask(bg, "F", "1", "start", "1")
	if err != nil {
		t.Fatalf("the failure of start was not recorded: %v", err)
	}
	if task.Status != datastore.StatusFailed {
		t.Fatalf("start reads %s, want failed", task.Status)
	}
}

// openCount is how many descriptors of this process are open on path.
func openCount(path string) int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}
