package datastore

import (
	"strings"
	"testing"
	"time"
)

func TestSettleTakesRunsWithAStaleHeartbeatForFailed(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := []struct {
		name    string
		run     Run
		stopped bool
		errHas  string
	}{
		{"fresh heartbeat", Run{Status: StatusRunning, CreatedAt: ago(time.Hour), HeartbeatAt: ago(5 * time.Second), HeartbeatSeconds: 10}, false, ""},
		{"just within 6 beats", Run{Status: StatusRunning, CreatedAt: ago(time.Hour), HeartbeatAt: ago(60 * time.Second), HeartbeatSeconds: 10}, false, ""},
		{"stale heartbeat", Run{Status: StatusRunning, CreatedAt: ago(time.Hour), HeartbeatAt: ago(61 * time.Second), HeartbeatSeconds: 10}, true, "its engine stopped (last heartbeat at 2026-03-01 "},
		{"the record's interval, not the default", Run{Status: StatusRunning, CreatedAt: ago(time.Hour), HeartbeatAt: ago(7 * time.Second), HeartbeatSeconds: 1}, true, "last heartbeat at"},
		{"no interval recorded: the default", Run{Status: StatusRunning, CreatedAt: ago(time.Hour), HeartbeatAt: ago(30 * time.Second)}, false, ""},
		{"missing heartbeat, young run", Run{Status: StatusRunning, CreatedAt: ago(10 * time.Second)}, false, ""},
		{"missing heartbeat, old run", Run{Status: StatusRunning, CreatedAt: ago(2 * time.Minute)}, true, "its engine stopped (no heartbeat since it was created at"},
		{"completed run untouched", Run{Status: StatusCompleted, CreatedAt: ago(time.Hour), HeartbeatAt: ago(time.Hour), FinishedAt: ago(time.Hour)}, false, ""},
		{"failed run untouched", Run{Status: StatusFailed, Error: "step a failed", CreatedAt: ago(time.Hour), HeartbeatAt: ago(time.Hour)}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run
			running := &Task{Status: StatusRunning, Attempts: []Attempt{{Attempt: 0, Status: StatusRunning}}}
			done := &Task{Status: StatusCompleted, Attempts: []Attempt{{Attempt: 0, Status: StatusCompleted}}}
			before := tc.run
			if got := Settle(now, &run, running, done); got != tc.stopped {
				t.Fatalf("Settle = %v, want %v", got, tc.stopped)
			}
			if done.Status != StatusCompleted || done.Attempts[0].Status != StatusCompleted {
				t.Fatalf("a completed task changed: %+v", done)
			}
			if !tc.stopped {
				if run.Status != before.Status || run.Error != before.Error || !run.FinishedAt.Equal(before.FinishedAt) {
					t.Fatalf("run changed: %+v, was %+v", run, before)
				}
				if run.Status == StatusRunning {
					if running.Status != StatusRunning || running.Attempts[0].Status != StatusRunning {
						t.Fatalf("task of a live run changed: %+v", running)
					}
					return
				}
				// The run ended: a task whose end could not be recorded
				// did not complete.
				want := "its end was not recorded (the run ended " + run.Status + ")"
				if run.Status == StatusFailed {
					want = "the run failed before the task's end could be recorded: " + run.Error
				}
				if running.Status != StatusFailed || running.Attempts[0].Status != StatusFailed ||
					!strings.Contains(running.Attempts[0].Error, want) {
					t.Fatalf("a task recorded running in an ended run reads %+v", running)
				}
				return
			}
			if run.Status != StatusFailed || !strings.Contains(run.Error, tc.errHas) || run.FinishedAt.IsZero() {
				t.Fatalf("run not failed as its engine stopped: status %s, error %q, finished %v", run.Status, run.Error, run.FinishedAt)
			}
			if running.Status != StatusFailed || running.Attempts[0].Status != StatusFailed ||
				!strings.Contains(running.Attempts[0].Error, "its engine stopped") || running.FinishedAt.IsZero() {
				t.Fatalf("running task not failed: %+v", running)
			}
			// Settled once, the run's tasks read later are settled too.
			later := &Task{Status: StatusRunning}
			if !Settle(now, &run, later) || later.Status != StatusFailed {
				t.Fatalf("a task settled after its run: %+v", later)
			}
		})
	}
}

func TestTaskStagingNames(t *testing.T) {
	cases := []struct {
		name, run string
		ok        bool
	}{
		{TaskStagingPrefix("12", "nap-3") + "123456", "12", true},
		{TaskStagingPrefix("0", "start-1") + "9", "0", true},
		{".put-123", "", false},
		{"out-123", "", false},
		{"012-a-1-2", "", false},
		{"12", "", false},
	}
	for _, tc := range cases {
		run, ok := TaskStagingRun(tc.name)
		if run != tc.run || ok != tc.ok {
			t.Errorf("TaskStagingRun(%q) = %q, %v; want %q, %v", tc.name, run, ok, tc.run, tc.ok)
		}
	}
}

// A run whose end this process could not record reads as ended here (with
// its tasks) at once, and as recorded once forgotten.
func TestSettleReadsAnUnrecordedEndOfThisProcess(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := Run{Flow: "F", RunID: "3", Status: StatusRunning, CreatedAt: now.Add(-time.Minute), HeartbeatAt: now, HeartbeatSeconds: 10}
	end := rec
	end.Status, end.Error, end.FinishedAt = StatusFailed, "store artifact x: no space left on device", now
	NoteUnrecordedEnd(&end)
	defer ForgetUnrecordedEnd(&end)

	other := rec
	other.CreatedAt = rec.CreatedAt.Add(time.Second) // same name, another store
	if Settle(now, &other); other.Status != StatusRunning {
		t.Fatalf("another run of the same name was settled: %+v", other)
	}
	run := rec
	task := &Task{Status: StatusRunning, Attempts: []Attempt{{Status: StatusRunning}}}
	if Settle(now, &run, task) {
		t.Fatal("Settle says the engine stopped; it is alive")
	}
	if run.Status != StatusFailed || run.Error != end.Error || !run.FinishedAt.Equal(now) {
		t.Fatalf("run not read as it ended: %+v", run)
	}
	if task.Status != StatusFailed || !strings.Contains(task.Attempts[0].Error, "no space left on device") {
		t.Fatalf("its running task not read as failed: %+v", task)
	}
	ForgetUnrecordedEnd(&end)
	run = rec
	if Settle(now, &run); run.Status != StatusRunning {
		t.Fatalf("a forgotten end still read: %+v", run)
	}
}

// A Batch attempt of a run whose engine stopped is not said to be killed:
// its job does not die with the engine.
func TestSettleLeavesRemoteJobsRunning(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	run := Run{RunID: "12", Status: StatusRunning, CreatedAt: now.Add(-time.Hour), HeartbeatAt: now.Add(-time.Hour), HeartbeatSeconds: 10}
	job := &Task{Status: StatusRunning, Attempts: []Attempt{{Status: StatusRunning, JobID: "job-1"}}}
	local := &Task{Status: StatusRunning, Attempts: []Attempt{{Status: StatusRunning, PID: 42}}}
	if !Settle(now, &run, job, local) {
		t.Fatal("the run's engine is not taken for stopped")
	}
	a := job.Attempts[0]
	if a.Status != StatusFailed || !a.JobLeftRunning || strings.Contains(a.Error, "killed") ||
		!strings.Contains(a.Error, "its engine stopped") || !strings.Contains(a.Error, "job job-1 was not stopped") ||
		!strings.Contains(a.Error, "batch kill --run-id 12") {
		t.Fatalf("Batch attempt settled as %+v", a)
	}
	if l := local.Attempts[0]; l.JobLeftRunning || !strings.HasPrefix(l.Error, "killed: its engine stopped") {
		t.Fatalf("local attempt settled as %+v", l)
	}
}
