package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
)

// shortHeartbeat makes runs beat every d for the test.
func shortHeartbeat(t *testing.T, d time.Duration) {
	old := HeartbeatInterval
	HeartbeatInterval = d
	t.Cleanup(func() { HeartbeatInterval = old })
}

func TestRunningRunRefreshesItsHeartbeat(t *testing.T) {
	shortHeartbeat(t, 20*time.Millisecond)
	ex := &fakeExec{steps: map[string]stepFunc{"start": splits(2)}, block: "work"}
	r, store := newRun(t, foreachGraph(t), ex, Options{})
	if err := r.Prepare(bg); err != nil {
		t.Fatal(err)
	}
	first, err := store.GetRun(bg, "F", r.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if first.HeartbeatAt.IsZero() || first.HeartbeatSeconds != 0.02 {
		t.Fatalf("the new run has no heartbeat: %+v", first)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error)
	go func() { done <- r.Execute(ctx) }()
	var beat time.Time
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		run, err := store.GetRun(bg, "F", r.RunID())
		if err == nil && run.HeartbeatAt.After(first.HeartbeatAt) && run.Status == datastore.StatusRunning {
			beat = run.HeartbeatAt
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if beat.IsZero() {
		cancel()
		<-done
		t.Fatal("the running run's heartbeat was not refreshed")
	}
	cancel()
	if err := <-done; !IsInterrupted(err) {
		t.Fatalf("want interrupted, got %v", err)
	}
	// No late heartbeat overwrites the run's end.
	time.Sleep(60 * time.Millisecond)
	run, err := store.GetRun(bg, "F", r.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != datastore.StatusFailed || run.FinishedAt.IsZero() {
		t.Fatalf("the run's end was overwritten: %+v", run)
	}
}

// engineDied turns a completed run into what an engine killed while its end
// step ran leaves: the run and the end task recorded as running, the last
// heartbeat at beat.
func engineDied(t *testing.T, store datastore.Store, runID string, beat time.Time) {
	t.Helper()
	run, err := store.GetRun(bg, "F", runID)
	if err != nil {
		t.Fatal(err)
	}
	run.Status, run.FinishedAt, run.HeartbeatAt, run.HeartbeatSeconds = datastore.StatusRunning, time.Time{}, beat, 1
	if err := store.PutRun(bg, run); err != nil {
		t.Fatal(err)
	}
	ids, err := store.ListTasks(bg, "F", runID, "end")
	if err != nil || len(ids) != 1 {
		t.Fatalf("end tasks %v (%v)", ids, err)
	}
	task, err := store.GetTask(bg, "F", runID, "end", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	task.Status, task.FinishedAt = datastore.StatusRunning, time.Time{}
	task.Attempts[len(task.Attempts)-1].Status = datastore.StatusRunning
	if err := store.PutTask(bg, task); err != nil {
		t.Fatal(err)
	}
}

func TestPlainResumePicksUpARunWhoseEngineStopped(t *testing.T) {
	cases := []struct {
		name    string
		beatAgo time.Duration
		resumes bool
	}{
		{"fresh heartbeat: still running, nothing to resume", 0, false},
		{"stale heartbeat: resumed from the running step", 10 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := foreachGraph(t)
			ex := &fakeExec{steps: map[string]stepFunc{"start": splits(2)}}
			r, store := newRun(t, g, ex, Options{})
			if err := execute(t, r); err != nil {
				t.Fatal(err)
			}
			engineDied(t, store, r.RunID(), time.Now().Add(-tc.beatAgo))
			ex2 := &fakeExec{steps: ex.steps}
			r2 := &Run{Graph: g, Store: store, Exec: ex2, Code: []byte("code"), Opts: Options{MaxWorkers: 4, MaxNumSplits: 100, Resume: true}}
			err := execute(t, r2)
			if !tc.resumes {
				if !errors.Is(err, errs.ErrPrecondition) || !strings.Contains(err.Error(), "nothing to resume") {
					t.Fatalf("want nothing to resume, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r2.meta.OriginRunID != r.RunID() || r2.Opts.ResumeStep != "end" {
				t.Fatalf("resumed run %q from %q, want run %s from end", r2.meta.OriginRunID, r2.Opts.ResumeStep, r.RunID())
			}
			if n := len(ex2.stepCalls("end")); n != 1 || len(ex2.stepCalls("work")) != 0 {
				t.Fatalf("resume ran end %d times and work %d times", n, len(ex2.stepCalls("work")))
			}
			// The record is not rewritten: readers settle it.
			run, err := store.GetRun(bg, "F", r.RunID())
			if err != nil {
				t.Fatal(err)
			}
			if run.Status != datastore.StatusRunning {
				t.Fatalf("origin record rewritten: %s", run.Status)
			}
		})
	}
}

func TestCleanStagingKeepsFoldersOfRunningRuns(t *testing.T) {
	g := foreachGraph(t)
	ex := &fakeExec{steps: map[string]stepFunc{"start": splits(1)}}
	_, store := newRun(t, g, ex, Options{})
	now := time.Now()
	runs := []struct {
		status string
		beat   time.Time
	}{
		{datastore.StatusCompleted, now.Add(-time.Hour)}, // 1: ended
		{datastore.StatusRunning, now},                   // 2: running (another engine)
		{datastore.StatusRunning, now.Add(-time.Hour)},   // 3: its engine stopped
		{datastore.StatusFailed, now.Add(-time.Hour)},    // 4: ended
	}
	for _, rr := range runs {
		run := &datastore.Run{Flow: "F", Status: rr.status, CreatedAt: rr.beat, HeartbeatAt: rr.beat, HeartbeatSeconds: 1}
		if err := store.NewRun(bg, run); err != nil {
			t.Fatal(err)
		}
	}
	base, err := store.Staging(bg, "F")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		dir     bool
		removed bool
	}{
		{datastore.TaskStagingPrefix("1", "end-5") + "1", true, true},
		{datastore.TaskStagingPrefix("2", "work-3") + "2", true, false},
		{datastore.TaskStagingPrefix("3", "work-3") + "3", true, true},
		{datastore.TaskStagingPrefix("3", "work-4") + "4", true, true},
		{datastore.TaskStagingPrefix("4", "start-1") + "5", true, true},
		{datastore.TaskStagingPrefix("9", "start-1") + "6", true, false}, // no record
		{".put-123", false, false},                                       // a blob being put
		{"out-123", true, false},                                         // not a task's
	}
	for _, tc := range cases {
		p := filepath.Join(base, tc.name)
		if tc.dir {
			err = os.MkdirAll(filepath.Join(p, "x"), 0o755)
		} else {
			err = os.WriteFile(p, []byte("x"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	removed, err := CleanStaging(bg, store, "F", now)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, tc := range cases {
		_, statErr := os.Stat(filepath.Join(base, tc.name))
		if gone := os.IsNotExist(statErr); gone != tc.removed {
			t.Errorf("%s: removed %v, want %v", tc.name, gone, tc.removed)
		}
		if tc.removed {
			want = append(want, filepath.Join(base, tc.name))
		}
	}
	sort.Strings(removed)
	sort.Strings(want)
	if strings.Join(removed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("CleanStaging reported\n%v\nwant\n%v", removed, want)
	}
}

func TestPlainResumeRefusesAnUnreadableNewestRun(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, runDir string)
		errHas []string // empty: the run is resumed
	}{
		{"a run folder without its record (its engine died creating it) is skipped", func(t *testing.T, runDir string) {
			next := filepath.Join(filepath.Dir(runDir), "99")
			if err := os.Mkdir(next, 0o755); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"a truncated record is named, not skipped for an older run", func(t *testing.T, runDir string) {
			if err := os.WriteFile(filepath.Join(runDir, "_run.json"), []byte(`{"flow": "F", "st`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"cannot resume: run 2 of flow F cannot be read", "_run.json", "--origin-run-id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := foreachGraph(t)
			ex := &fakeExec{steps: map[string]stepFunc{"start": splits(2)}}
			r, store := newRun(t, g, ex, Options{})
			if err := execute(t, r); err != nil {
				t.Fatal(err)
			}
			// Run 2's engine died while its end step ran.
			r2, _ := newRun(t, g, ex, Options{})
			r2.Store = store
			if err := execute(t, r2); err != nil {
				t.Fatal(err)
			}
			engineDied(t, store, r2.RunID(), time.Now().Add(-time.Minute))
			tc.damage(t, filepath.Join(store.Root, "F", r2.RunID()))
			r3 := &Run{Graph: g, Store: store, Exec: &fakeExec{steps: ex.steps}, Code: []byte("code"), Opts: Options{MaxWorkers: 4, MaxNumSplits: 100, Resume: true}}
			err := execute(t, r3)
			if len(tc.errHas) == 0 {
				if err != nil || r3.meta.OriginRunID != r2.RunID() {
					t.Fatalf("resumed run %q (%v), want run %s", r3.Opts.OriginRunID, err, r2.RunID())
				}
				return
			}
			if !errors.Is(err, errs.ErrPrecondition) {
				t.Fatalf("want a precondition error, got %v", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// Resume clones a task only from a record that is the task's own and the
// only one at its place in the flow; otherwise the step runs again.
func TestResumeDoesNotCloneDamagedTaskRecords(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, work []*datastore.Task) *datastore.Task // the record to write
	}{
		{"two tasks claim one foreach index", func(t *testing.T, work []*datastore.Task) *datastore.Task {
			d := *work[1]
			d.Stack = append([]datastore.Frame{}, work[0].Stack...)
			return &d
		}},
		{"a record naming another task", func(t *testing.T, work []*datastore.Task) *datastore.Task {
			d := *work[1]
			d.TaskID = work[0].TaskID
			return &d
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := foreachGraph(t)
			ex := &fakeExec{steps: map[string]stepFunc{"start": splits(2)}}
			r, store := newRun(t, g, ex, Options{})
			if err := execute(t, r); err != nil {
				t.Fatal(err)
			}
			engineDied(t, store, r.RunID(), time.Now().Add(-time.Minute))
			ids, err := store.ListTasks(bg, "F", r.RunID(), "work")
			if err != nil || len(ids) != 2 {
				t.Fatalf("work tasks %v (%v)", ids, err)
			}
			var work []*datastore.Task
			for _, id := range ids {
				w, err := store.GetTask(bg, "F", r.RunID(), "work", id)
				if err != nil {
					t.Fatal(err)
				}
				work = append(work, w)
			}
			// Written in the second task's folder, whatever it says.
			b, err := json.Marshal(tc.damage(t, work))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(store.Root, "F", r.RunID(), "work", ids[1], "_task.json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			ex2 := &fakeExec{steps: ex.steps}
			r2 := &Run{Graph: g, Store: store, Exec: ex2, Code: []byte("code"), Opts: Options{MaxWorkers: 4, MaxNumSplits: 100, Resume: true}}
			if err := execute(t, r2); err != nil {
				t.Fatal(err)
			}
			if r2.Opts.ResumeStep != "work" || len(ex2.stepCalls("work")) != 2 {
				t.Fatalf("resumed from %q running work %d times; want work run again for both splits", r2.Opts.ResumeStep, len(ex2.stepCalls("work")))
			}
		})
	}
}
