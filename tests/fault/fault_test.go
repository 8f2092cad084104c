package main

import (
	"bytes"
	"context"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

func TestDamage(t *testing.T) {
	orig := []byte(`{"sha": "abc", "size": 3}`)
	other := []byte("another blob")
	for seed := int64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewSource(seed))
		cases := []struct {
			kind  string
			check func(b []byte) bool
		}{
			{flip, func(b []byte) bool {
				n := 0
				for i := range b {
					if b[i] != orig[i] {
						n++
					}
				}
				return len(b) == len(orig) && n == 1
			}},
			{truncate, func(b []byte) bool { return len(b) < len(orig) && bytes.HasPrefix(orig, b) }},
			{replace, func(b []byte) bool { return bytes.Equal(b, other) }},
		}
		for _, tc := range cases {
			if got := damage(rng, tc.kind, orig, other); !tc.check(got) {
				t.Fatalf("seed %d: %s made %q of %q", seed, tc.kind, got, orig)
			}
		}
	}
	if string(orig) != `{"sha": "abc", "size": 3}` {
		t.Fatal("damage changed its input")
	}
}

func TestDiff(t *testing.T) {
	want := results{"start|": {"xs": "a", "label": "b"}, "work|start:0": {"sq": "c"}}
	cases := []struct {
		name string
		got  results
		has  string // "" means equal
	}{
		{"equal", results{"start|": {"xs": "a", "label": "b"}, "work|start:0": {"sq": "c"}}, ""},
		{"a task missing", results{"start|": {"xs": "a", "label": "b"}}, "no completed task at work|start:0"},
		{"an artifact changed", results{"start|": {"xs": "a", "label": "x"}, "work|start:0": {"sq": "c"}}, `start|: artifact label is "x", want b`},
		{"an artifact missing", results{"start|": {"xs": "a"}, "work|start:0": {"sq": "c"}}, `artifact label is "", want b`},
		{"an extra artifact", results{"start|": {"xs": "a", "label": "b", "z": "q"}, "work|start:0": {"sq": "c"}}, "unexpected artifact z"},
		{"an extra task", results{"start|": {"xs": "a", "label": "b"}, "work|start:0": {"sq": "c"}, "work|start:1": {}}, "unexpected task at work|start:1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := diff(want, tc.got)
			if (tc.has == "") != (d == "") || !strings.Contains(d, tc.has) {
				t.Fatalf("diff = %q, want it to say %q", d, tc.has)
			}
		})
	}
}

func TestClassifyOnlyRegisteredKnownFailures(t *testing.T) {
	cases := []struct {
		problem string
		name    string
		ok      bool
	}{
		{knownAs("task-reads-unverified", "wrong value: x"), "task-reads-unverified", true},
		{knownAs("diskfull-task-writes", "wrong value: x"), "diskfull-task-writes", true},
		{knownAs("client-reads-unverified", "wrong value: x"), "client-reads-unverified", true},
		{knownAs("no-such-failure", "wrong value: x"), "", false},
		{"wrong value: x", "", false},
		{"known(task-reads-unverified) without its separator", "", false},
	}
	for _, tc := range cases {
		if name, ok := classify(tc.problem); name != tc.name || ok != tc.ok {
			t.Errorf("classify(%q) = %q, %v; want %q, %v", tc.problem, name, ok, tc.name, tc.ok)
		}
	}
}

func TestRecordOutcomes(t *testing.T) {
	cases := []struct {
		name     string
		strict   string
		problems []string
		refused  bool
		want     string
	}{
		{"no problem", "", nil, false, held},
		{"refused naming it", "", nil, true, refused},
		{"a problem", "", []string{"lost: x"}, false, violated},
		{"a known failure", "", []string{knownAs("task-reads-unverified", "wrong value: x")}, false, "known:task-reads-unverified"},
		{"a known failure made strict", "task-reads-unverified", []string{knownAs("task-reads-unverified", "wrong value: x")}, false, violated},
		{"all strict", "all", []string{knownAs("diskfull-task-writes", "wrong value: x")}, false, violated},
		{"a known failure and a problem", "", []string{knownAs("task-reads-unverified", "w"), "stuck: run 1"}, false, violated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &suite{tally: newTally(), strict: map[string]bool{}, begun: time.Now()}
			if tc.strict != "" {
				s.strict[tc.strict] = true
			}
			s.record(flip, "x", tc.problems, tc.refused)
			if s.tally.counts[flip][tc.want] != 1 || s.tally.fired() != 1 {
				t.Fatalf("counts %v, want one %s", s.tally.counts, tc.want)
			}
		})
	}
}

func TestPlanMeetsFaultN(t *testing.T) {
	for _, n := range []int{1, 10, 50, 60, 200} {
		s := &suite{n: n, rng: rand.New(rand.NewSource(1))}
		p := s.plan()
		if got := len(p.kills) + len(p.muts) + len(p.fills); got < n {
			t.Fatalf("FAULT_N=%d planned %d injections", n, got)
		}
		if n >= 50 {
			count := map[string]int{}
			for _, k := range append(append(append([]string{}, p.kills...), p.muts...), p.fills...) {
				count[k]++
			}
			for _, k := range kinds {
				if count[k] < 3 {
					t.Fatalf("FAULT_N=%d plans %d of %s", n, count[k], k)
				}
			}
		}
	}
}

func TestTallySummary(t *testing.T) {
	tl := newTally()
	tl.add(killEngine, held)
	tl.add(killEngine, missed)
	tl.add(flip, refused)
	tl.add(flip, "known:task-reads-unverified")
	got := tl.summary(7, 12)
	want := "fault: seed 7: 3 injections: kill-engine=1 (held 1, missed 1) flip=2 (refused 1, known:task-reads-unverified 1); outcomes: held=1 refused=1 missed=1 known:task-reads-unverified=1; 12 s"
	if got != want {
		t.Fatalf("summary\n%s\nwant\n%s", got, want)
	}
}

// The ledger finds what the invariants forbid in the records: a completed
// task's artifact pointing elsewhere, a completed task no longer completed,
// and a newly completed task that is not the uninterrupted run's.
func TestLedgerScan(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	run := &datastore.Run{Flow: flowName, Status: datastore.StatusCompleted, CreatedAt: time.Now()}
	if err := store.NewRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	put := func(step, id, status string, arts map[string]string) {
		t.Helper()
		m := map[string]datastore.Artifact{}
		for k, v := range arts {
			m[k] = datastore.Artifact{SHA: v, Size: 1}
		}
		if status != datastore.StatusCompleted {
			m = nil
		}
		if err := store.PutTask(ctx, &datastore.Task{Flow: flowName, RunID: run.RunID, Step: step, TaskID: id, Status: status, Artifacts: m}); err != nil {
			t.Fatal(err)
		}
	}
	want := results{"start|": {"xs": "a"}, "end|": {"xs": "a", "final": "f"}}
	put("start", "1", datastore.StatusCompleted, map[string]string{"xs": "a"})
	put("end", "2", datastore.StatusRunning, nil)
	l := newLedger(root)
	if p, err := l.scan(want); err != nil || len(p) != 0 {
		t.Fatalf("scan of a sound run: %v, %v", p, err)
	}
	if len(l.entries) != 1 {
		t.Fatalf("entries %v", l.entries)
	}
	cases := []struct {
		name string
		do   func()
		has  string
	}{
		{"a task completes with a wrong value", func() { put("end", "2", datastore.StatusCompleted, map[string]string{"xs": "a", "final": "g"}) }, "wrong value: artifact final of completed task FaultFlowR/1/end/2 is blob g"},
		{"a completed task's artifact points elsewhere", func() { put("start", "1", datastore.StatusCompleted, map[string]string{"xs": "b"}) }, "altered: artifact xs of completed task FaultFlowR/1/start/1 now points at blob b (was a)"},
		{"a completed task is not any more", func() { put("start", "1", datastore.StatusFailed, map[string]string{"xs": "a"}) }, "lost: task FaultFlowR/1/start/1 was completed and no longer is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			p, err := l.scan(want)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(p, "\n"), tc.has) {
				t.Fatalf("scan found %q, want %q", p, tc.has)
			}
			put("start", "1", datastore.StatusCompleted, map[string]string{"xs": "a"})
		})
	}
}

func TestNames(t *testing.T) {
	e := &entry{run: "3", step: "work", task: "4", name: "sq", sha: strings.Repeat("ab", 32)}
	cases := []struct {
		msg     string
		damaged string
		want    bool
	}{
		{"artifact sq of FaultFlowR/3/work/4 is corrupt: ...", "", true},
		{"blob " + e.sha + " of flow FaultFlowR is corrupt", "", true},
		{"parse /x/.metaflow/FaultFlowR/3/work/4/_task.json: unexpected end", "/x/.metaflow/FaultFlowR/3/work/4/_task.json", true},
		{"something failed", "", false},
		{"artifact sq of FaultFlowR/3/work/40 is corrupt", "", false},
	}
	for _, tc := range cases {
		if got := names(tc.msg, e, tc.damaged); got != tc.want {
			t.Errorf("names(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

func TestPlanWithoutDiskFull(t *testing.T) {
	s := &suite{n: 50, rng: rand.New(rand.NewSource(1)), noDiskFull: true}
	p := s.plan()
	if len(p.fills) != 0 || len(p.kills)+len(p.muts) < 50 {
		t.Fatalf("FAULT_DISKFULL=0 planned %d fills, %d injections in all", len(p.fills), len(p.kills)+len(p.muts))
	}
}

func TestResumeFrom(t *testing.T) {
	cases := []struct {
		done []string
		from string
		left int
	}{
		{nil, "start", 6},
		{[]string{"2/start/1"}, "work", 5},
		{[]string{"2/start/1", "2/work/2", "2/work/4"}, "work", 5},
		{[]string{"2/start/1", "2/work/2", "2/work/3", "2/work/4"}, "join", 2},
		{[]string{"2/start/1", "2/work/2", "2/work/3", "2/work/4", "2/join/5", "1/end/6"}, "end", 1},
		{[]string{"2/start/1", "2/work/2", "2/work/3", "2/work/4", "2/join/5", "2/end/6"}, "", 0},
	}
	for _, tc := range cases {
		c := &chain{ledger: newLedger(t.TempDir())}
		for _, k := range tc.done {
			c.ledger.tasks[k] = true
		}
		if from, left := c.resumeFrom("2"); from != tc.from || left != tc.left {
			t.Errorf("done %v: resume from %q running %d tasks, want %q and %d", tc.done, from, left, tc.from, tc.left)
		}
	}
}

func TestGroupLeader(t *testing.T) {
	for _, own := range []bool{true, false} {
		cmd := exec.Command("sleep", "5")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: own}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got := groupLeader(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if got != own {
			t.Fatalf("a child started with Setpgid %v: groupLeader = %v", own, got)
		}
	}
	if groupLeader(1 << 30) {
		t.Fatal("a pid that does not exist leads a group")
	}
}
