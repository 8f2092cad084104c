package batch

import (
	"testing"
	"time"
)

func TestFailureSaysWhatBatchTells(t *testing.T) {
	one, oom := 1, 137
	cases := []struct {
		name string
		st   JobStatus
		exit *int
		want string
	}{
		{"nothing known", JobStatus{}, nil, "Batch gave no reason"},
		{"runner's exit code", JobStatus{}, &one, "exit code 1"},
		{"Batch's exit code", JobStatus{ExitCode: &oom}, nil, "exit code 137"},
		{"runner's code wins", JobStatus{ExitCode: &oom}, &one, "exit code 1"},
		{"everything", JobStatus{StatusReason: "Essential container in task exited", Reason: "OutOfMemoryError: Container killed due to memory usage", ExitCode: &oom}, nil,
			"Essential container in task exited; OutOfMemoryError: Container killed due to memory usage; exit code 137"},
		{"same reason twice", JobStatus{StatusReason: "Terminated", Reason: "Terminated"}, nil, "Terminated"},
	}
	for _, c := range cases {
		if got := failure(c.st, c.exit); got != c.want {
			t.Errorf("%s: failure = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestBatchTimeoutBacksUpTheEngines(t *testing.T) {
	for limit, want := range map[time.Duration]int{0: 5*24*3600 + 60, time.Second: 61, 30 * time.Minute: 1860, 90 * time.Second: 150} {
		if got := batchTimeout(limit); got != want {
			t.Errorf("batchTimeout(%s) = %d, want %d", limit, got, want)
		}
	}
}
