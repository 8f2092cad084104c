package batch

import (
	"strings"
	"testing"
	"time"
)

func TestRunnableWatchWarnsOnceAfterThreshold(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		state State
		at    time.Duration
		warn  bool
	}{
		{StateSubmitted, 0, false},
		{StateRunnable, time.Second, false},
		{StateRunnable, 4 * time.Minute, false},
		{StateRunnable, 6*time.Minute + time.Second, true},
		{StateRunnable, 10 * time.Minute, false}, // only once
		{StateRunning, 11 * time.Minute, false},
	}
	w := runnableWatch{after: 5 * time.Minute}
	for i, s := range steps {
		d, warn := w.check(s.state, t0.Add(s.at))
		if warn != s.warn {
			t.Fatalf("step %d (%s at %s): warn=%v, want %v", i, s.state, s.at, warn, s.warn)
		}
		if warn && d != 6*time.Minute {
			t.Fatalf("RUNNABLE for %s, want 6m (since the first RUNNABLE sighting)", d)
		}
	}
	msg := runnableWarning("job-1", "q", Resources{VCPUs: 8, MemoryMB: 60000, GPUs: 1}, 5*time.Minute)
	for _, want := range []string{"job-1", "RUNNABLE for 5m0s", "queue q", "maxvCpus"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("warning %q lacks %q", msg, want)
		}
	}
}
