package shim

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/testfs"
)

// rCode is a flow's code bundle (as run() makes it) of the R expression
// expr: list(functions = ..., globals = ..., packages = ...).
func rCode(t *testing.T, expr string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "code.rds")
	out, err := exec.Command("Rscript", "-e", "writeBin(serialize("+expr+", NULL), '"+path+"')").CombinedOutput()
	if err != nil {
		t.Fatalf("make the code bundle: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A datastore on a disk that fails writes with EIO (a real FUSE file
// system) while a task runs: the R runtime's write fails with that cause on
// the console and in the run's error, the run fails, nothing reads
// "running", and the run's end is written once the disk works again.
func TestFailingDiskFailsTheTaskWithEIO(t *testing.T) {
	if _, err := exec.LookPath("Rscript"); err != nil {
		t.Skip("skipped: needs Rscript")
	}
	dir, disk := testfs.MountFailingDisk(t)
	wait := scheduler.EndRetryWait
	scheduler.EndRetryWait = 10 * time.Millisecond
	defer func() { scheduler.EndRetryWait = wait }()
	code := rCode(t, "list(functions = list(start = function(self) self$x <- 1:10, end = function(self) NULL), "+
		"globals = list(), packages = character())")
	ex, err := NewLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	g, err := graph.New("EioFlowR", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	store := datastore.NewLocal(filepath.Join(dir, ".metaflow"))
	r := &scheduler.Run{Graph: g, Store: store, Exec: ex, Code: code,
		Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 10, Workdir: t.TempDir()}}
	var mu sync.Mutex
	var lines []string
	r.Emit = func(e scheduler.Event) {
		if strings.Contains(e.Line, "[1/start/1 (pid ") && strings.HasSuffix(e.Line, "] Task is starting.") {
			disk.Break(true) // R has started; it writes its outputs when the step returns
		}
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, e.Line)
	}
	ctx := context.Background()
	if err := r.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	err = r.Execute(ctx)
	mu.Lock()
	console := strings.Join(lines, "\n")
	mu.Unlock()
	const cause = "x.mpk: Input/output error"
	if err == nil || !strings.HasPrefix(err.Error(), "step start failed (task 1/start/1): cannot store artifact 'x': write ") ||
		!strings.HasSuffix(err.Error(), cause) {
		t.Fatalf("run error = %v, want start failed with %q\n%s", err, cause, console)
	}
	if !strings.Contains(console, "] Error: cannot store artifact 'x': write ") {
		t.Fatalf("the console does not show the task's error:\n%s", console)
	}
	// The disk still fails: nothing could be recorded, yet nothing reads
	// running.
	run, err := store.GetRun(ctx, "EioFlowR", "1")
	if err != nil {
		t.Fatal(err)
	}
	// The task ended within scheduler.RunningRecordAfter: it was never
	// recorded running, and its end could not be recorded.
	if _, err := store.GetTask(ctx, "EioFlowR", "1", "start", "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a task record was written on a failing disk (%v)", err)
	}
	if run.Status != datastore.StatusRunning {
		t.Fatalf("the run's end was written on a failing disk: %s", run.Status)
	}
	datastore.Settle(time.Now(), run)
	if run.Status != datastore.StatusFailed || !strings.HasSuffix(run.Error, cause) {
		t.Fatalf("read as: run %s %q", run.Status, run.Error)
	}
	disk.Break(false)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if run, err = store.GetRun(ctx, "EioFlowR", "1"); err != nil {
			t.Fatal(err)
		}
		if run.Status != datastore.StatusRunning || time.Now().After(deadline) {
			break
		}
	}
	if run.Status != datastore.StatusFailed || !strings.HasSuffix(run.Error, cause) {
		t.Fatalf("the run's end was not written once the disk worked: %s %q", run.Status, run.Error)
	}
}
