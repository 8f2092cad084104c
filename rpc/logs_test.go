package rpc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/batch"
	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// logPlugin is an executor plugin that reads its attempts' logs
// (scheduler.LogSource) from a map by job id, recording what it was asked.
type logPlugin struct {
	logs  map[string][2]string // job id -> stdout, stderr
	mu    sync.Mutex
	asked []string
}

func (p *logPlugin) Name() string                             { return "AWS Batch" }
func (p *logPlugin) NewExecutor() (scheduler.Executor, error) { return okExec{}, nil }

func (p *logPlugin) AttemptLogs(ctx context.Context) scheduler.AttemptLogReader { return p }

func (p *logPlugin) Read(ctx context.Context, at datastore.Attempt) (stdout, stderr []byte, ok bool) {
	p.mu.Lock()
	p.asked = append(p.asked, at.JobID)
	p.mu.Unlock()
	l, ok := p.logs[at.JobID]
	return []byte(l[0]), []byte(l[1]), ok
}

// TestLogsOfRemoteAttempts: an attempt of a remote executor that has not
// ended shows the logs its plugin reads (where its job publishes them), or
// else the local files; an ended attempt, or one that was no job, shows
// what the datastore kept.
func TestLogsOfRemoteAttempts(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	if err := store.PutRun(context.Background(), &datastore.Run{Flow: "F", RunID: "1", Status: datastore.StatusRunning}); err != nil {
		t.Fatal(err)
	}
	live := "s3://logs/p/F/1/start/1/0-abc"
	tasks := []struct {
		id, status   string
		at           datastore.Attempt
		local        string
		stdout, errs string
	}{
		{"1", datastore.StatusRunning, datastore.Attempt{JobID: "job-1", LogsURL: live}, "local 1\n", "live out\n", "live err\n"},
		{"2", datastore.StatusRunning, datastore.Attempt{JobID: "job-2", LogsURL: "s3://logs/p/F/1/start/2/0-x"}, "local 2\n", "cw 1\ncw 2\n", ""},
		{"3", datastore.StatusRunning, datastore.Attempt{JobID: "job-3"}, "local 3\n", "local 3\n", ""},
		{"4", datastore.StatusCompleted, datastore.Attempt{JobID: "job-1", LogsURL: live}, "final 4\n", "final 4\n", ""},
		{"5", datastore.StatusRunning, datastore.Attempt{PID: 7}, "local 5\n", "local 5\n", ""},
	}
	for _, tc := range tasks {
		task := &datastore.Task{Flow: "F", RunID: "1", Step: "start", TaskID: tc.id, Status: tc.status, Attempts: []datastore.Attempt{tc.at}}
		if err := store.PutTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(store.LogFile("F", "1", "start", tc.id, 0, "stdout"), []byte(tc.local), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewServer(okExec{})
	p := &logPlugin{logs: map[string][2]string{"job-1": {"live out\n", "live err\n"}, "job-2": {"cw 1\ncw 2\n", ""}}}
	if err := srv.Executors.Register(batch.Decorator, p); err != nil {
		t.Fatal(err)
	}
	cl := serveServer(t, srv)
	resp, err := cl.Logs(context.Background(), &pb.LogsRequest{DatastoreRoot: root, Flow: "F", Pathspec: "1/start"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Tasks) != len(tasks) {
		t.Fatalf("%d tasks, want %d", len(resp.Tasks), len(tasks))
	}
	for i, tc := range tasks {
		got := resp.Tasks[i]
		if got.TaskId != tc.id || got.Stdout != tc.stdout || got.Stderr != tc.errs {
			t.Errorf("task %s: stdout %q stderr %q, want %q and %q", got.TaskId, got.Stdout, got.Stderr, tc.stdout, tc.errs)
		}
	}
	// Only the running attempts that were jobs were asked about.
	if len(p.asked) != 3 || p.asked[0] != "job-1" || p.asked[1] != "job-2" || p.asked[2] != "job-3" {
		t.Errorf("the plugin was asked about %v, want job-1 job-2 job-3", p.asked)
	}
}

// TestLogsOfAnAttempt: logs --attempt N shows that attempt of a task (a
// retried task's failed first try), of each task of a step that has it, and
// a clear NotFound naming the attempts there are when none has it.
func TestLogsOfAnAttempt(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	bg := context.Background()
	if err := store.PutRun(bg, &datastore.Run{Flow: "F", RunID: "1", Status: datastore.StatusCompleted}); err != nil {
		t.Fatal(err)
	}
	// Task 1 failed once and was retried; task 2 succeeded at once; task 3
	// has no attempt recorded yet.
	attempts := map[string]int{"1": 2, "2": 1, "3": 0}
	for id, n := range attempts {
		task := &datastore.Task{Flow: "F", RunID: "1", Step: "work", TaskID: id, Status: datastore.StatusCompleted}
		for a := 0; a < n; a++ {
			task.Attempts = append(task.Attempts, datastore.Attempt{Attempt: a})
		}
		if err := store.PutTask(bg, task); err != nil {
			t.Fatal(err)
		}
		for a := 0; a < n; a++ {
			for _, s := range datastore.Streams {
				body := fmt.Sprintf("%s of task %s attempt %d\n", s, id, a)
				if err := os.WriteFile(store.LogFile("F", "1", "work", id, a, s), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cl := serveServer(t, NewServer(okExec{}))
	cases := []struct {
		name     string
		req      *pb.LogsRequest
		want     []string // task id: stdout
		notFound string
	}{
		{"latest of each", &pb.LogsRequest{Pathspec: "1/work"},
			[]string{"1: stdout of task 1 attempt 1\n", "2: stdout of task 2 attempt 0\n", "3: "}, ""},
		{"first attempt of the step", &pb.LogsRequest{Pathspec: "1/work", Attempt: 0, HasAttempt: true},
			[]string{"1: stdout of task 1 attempt 0\n", "2: stdout of task 2 attempt 0\n"}, ""},
		{"second attempt: only the retried task", &pb.LogsRequest{Pathspec: "1/work", Attempt: 1, HasAttempt: true},
			[]string{"1: stdout of task 1 attempt 1\n"}, ""},
		{"one task's first attempt", &pb.LogsRequest{Pathspec: "1/work/1", Attempt: 0, HasAttempt: true},
			[]string{"1: stdout of task 1 attempt 0\n"}, ""},
		{"a task without that attempt", &pb.LogsRequest{Pathspec: "1/work/2", Attempt: 1, HasAttempt: true},
			nil, "task 1/work/2 has no attempt 1: its attempts are 0"},
		{"no task of the step has it", &pb.LogsRequest{Pathspec: "1/work", Attempt: 5, HasAttempt: true},
			nil, "no task of step work of run 1 has an attempt 5"},
		{"a task with no attempt yet", &pb.LogsRequest{Pathspec: "1/work/3", Attempt: 0, HasAttempt: true},
			nil, "task 1/work/3 has no attempt 0: it has none yet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.DatastoreRoot, tc.req.Flow = root, "F"
			resp, err := cl.Logs(bg, tc.req)
			if tc.notFound != "" {
				if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), tc.notFound) {
					t.Fatalf("err = %v, want NotFound %q", err, tc.notFound)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tl := range resp.Tasks {
				got = append(got, tl.TaskId+": "+tl.Stdout)
				if want := strings.Replace(tl.Stdout, "stdout", "stderr", 1); tl.Stderr != want {
					t.Errorf("task %s stderr %q, want %q", tl.TaskId, tl.Stderr, want)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
