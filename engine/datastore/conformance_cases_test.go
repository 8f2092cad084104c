//go:build linux

package datastore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/errs"
)

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// behaviours are what every Store does (TestConformance).
var behaviours = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"runs: ids in sequence, newest first, not found", func(t *testing.T, e *env) {
		for want := 1; want <= 11; want++ {
			r := &Run{Flow: "F", Status: StatusRunning, User: "u", Tags: []string{"a"}}
			if err := e.NewRun(bg, r); err != nil || r.RunID != fmt.Sprint(want) {
				t.Fatalf("NewRun = %q, %v; want %d", r.RunID, err, want)
			}
		}
		if ids, err := e.other().ListRuns(bg, "F"); err != nil || strings.Join(ids, ",") != "11,10,9,8,7,6,5,4,3,2,1" {
			t.Fatalf("ListRuns = %v, %v; want newest first, in numeric order", ids, err)
		}
		r, err := e.GetRun(bg, "F", "10")
		if err != nil || r.RunID != "10" || r.User != "u" || !reflect.DeepEqual(r.Tags, []string{"a"}) {
			t.Fatalf("GetRun = %+v, %v", r, err)
		}
		r.Status, r.Graph = StatusCompleted, []StepMeta{{Name: "start", Next: []string{"end"}}}
		if err := e.PutRun(bg, r); err != nil {
			t.Fatal(err)
		}
		if got, err := e.other().GetRun(bg, "F", "10"); err != nil || got.Status != StatusCompleted || !reflect.DeepEqual(got.Graph, r.Graph) {
			t.Fatalf("GetRun after PutRun = %+v, %v", got, err)
		}
		_, err = e.GetRun(bg, "F", "99")
		wantKind(t, "GetRun of a missing run", err, errs.ErrNotFound, "F/99")
		if ids, err := e.ListRuns(bg, "Nothing"); err != nil || len(ids) != 0 {
			t.Fatalf("ListRuns of a flow without runs = %v, %v", ids, err)
		}
	}},
	{"runs: the heartbeat is in the record, and readers settle a stale one", func(t *testing.T, e *env) {
		beat := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		r := &Run{Flow: "H", Status: StatusRunning, CreatedAt: beat, HeartbeatAt: beat, HeartbeatSeconds: 1}
		if err := e.NewRun(bg, r); err != nil {
			t.Fatal(err)
		}
		got, err := e.other().GetRun(bg, "H", r.RunID)
		if err != nil || !got.HeartbeatAt.Equal(beat) || got.HeartbeatSeconds != 1 || got.Status != StatusRunning {
			t.Fatalf("GetRun = %+v, %v; want the heartbeat as put", got, err)
		}
		if !Settle(time.Now(), got) || got.Status != StatusFailed || !strings.Contains(got.Error, "its engine stopped") {
			t.Fatalf("a run whose heartbeat is a minute old (1 s beats) read as %s %q", got.Status, got.Error)
		}
		r.HeartbeatAt = time.Now()
		if err := e.PutRun(bg, r); err != nil {
			t.Fatal(err)
		}
		if got, err = e.other().GetRun(bg, "H", r.RunID); err != nil || Settle(time.Now(), got) || got.Status != StatusRunning {
			t.Fatalf("a run with a fresh heartbeat read as %+v, %v", got, err)
		}
	}},
	{"runs: concurrent NewRun never shares an id", func(t *testing.T, e *env) {
		const n = 8
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := e.Store
				if i%2 == 1 {
					s = e.other()
				}
				// Records differ between writers (the scheduler's have the
				// time of creation): S3 takes a retried PUT of the very same
				// bytes for its own.
				r := &Run{Flow: "F", Status: StatusRunning, User: fmt.Sprint("user", i)}
				if err := s.NewRun(bg, r); err != nil {
					t.Error(err)
				}
				ids[i] = r.RunID
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, id := range ids {
			if id == "" || seen[id] {
				t.Fatalf("run ids %v: one is empty or given twice", ids)
			}
			seen[id] = true
		}
	}},
	{"flows: runs with records only, sorted", func(t *testing.T, e *env) {
		if got, err := e.ListFlows(bg); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("ListFlows of an empty store = %#v, %v; want empty", got, err)
		}
		for _, flow := range []string{"Zeta", "Alpha", "Alpha"} {
			if err := e.NewRun(bg, &Run{Flow: flow}); err != nil {
				t.Fatal(err)
			}
		}
		e.write(Blob("BlobsOnly", strings.Repeat("ab", 32)), []byte("x"))
		e.write(TaskRecord("NoRunRecord", "3", "start", "1"), []byte("{}"))
		e.write(RunRecord("bad-name", "1"), []byte("{}"))
		e.write(RunRecord("_s3cache", "1"), []byte("{}"))
		if got, err := e.other().ListFlows(bg); err != nil || strings.Join(got, ",") != "Alpha,Zeta" {
			t.Fatalf("ListFlows = %v, %v; want Alpha,Zeta", got, err)
		}
	}},
	{"tasks: numeric order, visible with their record only", func(t *testing.T, e *env) {
		for _, id := range []string{"10", "2", "1"} {
			if err := e.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: "start", TaskID: id, Status: StatusRunning}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: "end", TaskID: "11"}); err != nil {
			t.Fatal(err)
		}
		// A task folder with a log or a Batch job's files only is no task.
		e.write(AttemptLog("F", "1", "start", "3", 0, Stdout), []byte("a line\n"))
		e.write(JobFile(JobDir("F", "1", "start", "4", 0, "abcd"), JobSpec), []byte("spec"))
		if err := e.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: ParamsStep, TaskID: ParamsTask, Status: StatusCompleted, Artifacts: map[string]Artifact{}}); err != nil {
			t.Fatal(err)
		}
		o := e.other()
		if ids, err := o.ListTasks(bg, "F", "1", "start"); err != nil || strings.Join(ids, ",") != "1,2,10" {
			t.Fatalf("ListTasks = %v, %v; want 1,2,10", ids, err)
		}
		if steps, err := o.ListSteps(bg, "F", "1"); err != nil || strings.Join(steps, ",") != "end,start" {
			t.Fatalf("ListSteps = %v, %v; want end,start", steps, err)
		}
		for _, missing := range [][2]string{{"1", "nope"}, {"9", "start"}} {
			if ids, err := o.ListTasks(bg, "F", missing[0], missing[1]); err != nil || len(ids) != 0 {
				t.Errorf("ListTasks of %v = %v, %v; want none", missing, ids, err)
			}
		}
		if steps, err := o.ListSteps(bg, "F", "9"); err != nil || len(steps) != 0 {
			t.Errorf("ListSteps of a missing run = %v, %v; want none", steps, err)
		}
		task, err := o.GetTask(bg, "F", "1", "start", "10")
		if err != nil || task.TaskID != "10" || task.Status != StatusRunning {
			t.Fatalf("GetTask = %+v, %v", task, err)
		}
		_, err = o.GetTask(bg, "F", "1", "start", "3")
		wantKind(t, "GetTask of a folder without a record", err, errs.ErrNotFound, "F/1/start/3")
	}},
	{"artifact index and package manifest", func(t *testing.T, e *env) {
		arts := map[string]Artifact{"x": {SHA: strings.Repeat("a1", 32), Size: 3}, "y": {SHA: strings.Repeat("b2", 32), Size: 5 << 30}}
		if got, err := e.GetArtifacts(bg, "F", "1", "start", "1"); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("GetArtifacts before any = %#v, %v; want empty", got, err)
		}
		running := &Task{Flow: "F", RunID: "1", Step: "start", TaskID: "1", Status: StatusRunning}
		if err := e.PutTask(bg, running); err != nil {
			t.Fatal(err)
		}
		if got, err := e.other().GetArtifacts(bg, "F", "1", "start", "1"); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("GetArtifacts of a running task = %#v, %v; want empty", got, err)
		}
		done := *running
		done.Status, done.Artifacts = StatusCompleted, arts
		if err := e.PutTask(bg, &done); err != nil {
			t.Fatal(err)
		}
		if got, err := e.other().GetArtifacts(bg, "F", "1", "start", "1"); err != nil || !reflect.DeepEqual(got, arts) {
			t.Fatalf("GetArtifacts = %v, %v; want %v", got, err, arts)
		}
		// Runs recorded before records carried the index: _artifacts.json.
		e.write(TaskRecord("F", "1", "start", "3"), []byte(`{"flow":"F","run_id":"1","step":"start","task_id":"3","status":"completed"}`))
		e.write(ArtifactIndex("F", "1", "start", "3"), []byte(`{"x":{"sha":"`+arts["x"].SHA+`","size":3}}`))
		if got, err := e.other().GetArtifacts(bg, "F", "1", "start", "3"); err != nil || !reflect.DeepEqual(got, map[string]Artifact{"x": arts["x"]}) {
			t.Fatalf("GetArtifacts of an older record = %v, %v", got, err)
		}
		if got, err := e.GetPackage(bg, "F", "1"); err != nil || got != nil {
			t.Fatalf("GetPackage of a run without one = %v, %v; want nil", got, err)
		}
		if err := e.PutPackage(bg, "F", "1", arts); err != nil {
			t.Fatal(err)
		}
		if got, err := e.other().GetPackage(bg, "F", "1"); err != nil || !reflect.DeepEqual(got, arts) {
			t.Fatalf("GetPackage = %v, %v", got, err)
		}
		// Torn records are errors naming what they are, never empty.
		e.write(TaskRecord("F", "1", "start", "2"), []byte(`{"status":"completed","artifacts":{"x": {"sha"`))
		_, err := e.GetArtifacts(bg, "F", "1", "start", "2")
		if err == nil || !strings.Contains(err.Error(), "artifacts of task F/1/start/2") {
			t.Errorf("GetArtifacts of a torn index: %v", err)
		}
		e.write(PackageManifest("F", "2"), []byte(`{"flow.R": `))
		if _, err := e.GetPackage(bg, "F", "2"); err == nil || !strings.Contains(err.Error(), "code package of run F/2") {
			t.Errorf("GetPackage of a torn manifest: %v", err)
		}
	}},
	{"code: stored, and a local file on every machine", func(t *testing.T, e *env) {
		code := []byte("serialized functions")
		if err := e.PutCode(bg, "F", "1", code); err != nil {
			t.Fatal(err)
		}
		for i, s := range []Store{e.Store, e.other()} {
			p, err := s.CodeFile(bg, "F", "1")
			if b, rerr := os.ReadFile(p); err != nil || rerr != nil || !bytes.Equal(b, code) {
				t.Errorf("handle %d: CodeFile = %q (%q), %v", i, p, b, err)
			}
		}
		_, err := e.other().CodeFile(bg, "F", "2")
		wantKind(t, "CodeFile of a run without code", err, errs.ErrNotFound, "F/2")
	}},
	{"put: content addressed, on every machine", func(t *testing.T, e *env) {
		for _, content := range [][]byte{[]byte("hello"), {}} {
			a, err := e.Put(bg, "F", bytes.NewReader(content))
			if err != nil || a.SHA != shaHex(content) || a.Size != int64(len(content)) {
				t.Fatalf("Put(%q) = %+v, %v", content, a, err)
			}
			if again, err := e.Put(bg, "F", bytes.NewReader(content)); err != nil || again != a {
				t.Fatalf("second Put = %+v, %v; want %+v", again, err, a)
			}
			o := e.other()
			if size, ok, err := o.Has(bg, "F", a.SHA); err != nil || !ok || size != a.Size {
				t.Fatalf("Has = %d, %v, %v", size, ok, err)
			}
			if b, err := readAll(o, "F", a.SHA); err != nil || !bytes.Equal(b, content) {
				t.Fatalf("Open on another machine = %q, %v", b, err)
			}
			if _, ok, err := o.Has(bg, "G", a.SHA); err != nil || ok {
				t.Fatalf("Has in another flow = %v, %v; want false (blobs are per flow)", ok, err)
			}
		}
		for _, bad := range []string{"../../etc/passwd", strings.Repeat("AB", 32), "abc"} {
			_, _, err := e.Has(bg, "F", bad)
			wantKind(t, "Has of "+bad, err, errs.ErrInvalid)
			_, err = e.Open(bg, "F", bad)
			wantKind(t, "Open of "+bad, err, errs.ErrInvalid)
		}
	}},
	{"put: large, multipart", func(t *testing.T, e *env) {
		content := make([]byte, 9<<20+7)
		rand.Read(content)
		a, err := e.Put(bg, "F", bytes.NewReader(content))
		if err != nil || a.SHA != shaHex(content) {
			t.Fatalf("Put = %+v, %v", a, err)
		}
		if b, err := readAll(e.other(), "F", a.SHA); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("Open = %d bytes, %v", len(b), err)
		}
	}},
	{"put sha: checked, nothing read when held", func(t *testing.T, e *env) {
		content := []byte("known content")
		sha := shaHex(content)
		a, err := e.PutSHA(bg, "F", sha, bytes.NewReader(content))
		if err != nil || a != (Artifact{SHA: sha, Size: int64(len(content))}) {
			t.Fatalf("PutSHA = %+v, %v", a, err)
		}
		if a, err := e.other().PutSHA(bg, "F", sha, unreadable{t}); err != nil || a.Size != int64(len(content)) {
			t.Fatalf("PutSHA of a held blob = %+v, %v", a, err)
		}
		for _, wrong := range [][]byte{[]byte("other content"), make([]byte, 9<<20+1)} {
			sha := shaHex(append([]byte("not "), wrong...))
			_, err := e.PutSHA(bg, "F", sha, bytes.NewReader(wrong))
			wantKind(t, "PutSHA of the wrong content", err, errs.ErrCorrupt, sha, "F")
			if _, ok, err := e.other().Has(bg, "F", sha); err != nil || ok {
				t.Errorf("after a refused PutSHA: Has = %v, %v; want false", ok, err)
			}
		}
		_, err = e.PutSHA(bg, "F", "nope", bytes.NewReader(content))
		wantKind(t, "PutSHA of a bad name", err, errs.ErrInvalid)
	}},
	{"put file: renamed in, staged copy gone", func(t *testing.T, e *env) {
		staged := stage(t, e.Store, []byte("staged output"))
		before, err := os.Stat(staged)
		if err != nil {
			t.Fatal(err)
		}
		a, err := e.PutFile(bg, "F", staged)
		if err != nil || a.SHA != shaHex([]byte("staged output")) || a.Size != 13 {
			t.Fatalf("PutFile = %+v, %v", a, err)
		}
		if exists(staged) {
			t.Error("the staged file is still there")
		}
		copies := e.copies("F", a.SHA)
		if len(copies) != 1 {
			t.Fatalf("local copies %v", copies)
		}
		if after, err := os.Stat(copies[0]); err != nil || !os.SameFile(before, after) {
			t.Errorf("the blob is a copy of the staged file, not the file: %v", err)
		}
		again := stage(t, e.Store, []byte("staged output"))
		if b, err := e.PutFile(bg, "F", again); err != nil || b != a || exists(again) {
			t.Fatalf("PutFile of stored content = %+v, %v (staged left: %v)", b, err, exists(again))
		}
		if b, err := readAll(e.other(), "F", a.SHA); err != nil || string(b) != "staged output" {
			t.Fatalf("Open = %q, %v", b, err)
		}
	}},
	{"open and local file: corrupt blobs are detected, missing ones not found", func(t *testing.T, e *env) {
		content := []byte("the real content of the blob")
		a, err := e.Put(bg, "F", bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		if f, err := e.LocalFile(bg, "F", a.SHA); err != nil || !bytes.Equal(mustRead(t, f.Path), content) {
			t.Fatalf("LocalFile = %+v, %v", f, err)
		} else if f.Stamp != statOf(t, f.Path) {
			t.Errorf("LocalFile's stamp %+v is not its file's stat %+v", f.Stamp, statOf(t, f.Path))
		}
		missing := strings.Repeat("cd", 32)
		_, err = e.Open(bg, "F", missing)
		wantKind(t, "Open of a missing blob", err, errs.ErrNotFound, missing)
		_, err = e.other().LocalFile(bg, "F", missing)
		wantKind(t, "LocalFile of a missing blob", err, errs.ErrNotFound, missing)
		// The datastore of record's copy damaged (same size, then not).
		for _, bad := range [][]byte{bytes.ToUpper(content), []byte("short")} {
			e.write(Blob("F", a.SHA), bad)
			o := e.other()
			got, err := readAll(o, "F", a.SHA)
			wantKind(t, "Open of a corrupt blob", err, errs.ErrCorrupt, a.SHA, "F")
			if !bytes.Equal(got, bad) {
				t.Errorf("read %q before the end, want the stored bytes %q", got, bad)
			}
			if e.fetches {
				_, err := o.LocalFile(bg, "F", a.SHA)
				wantKind(t, "LocalFile of a corrupt blob", err, errs.ErrCorrupt, a.SHA)
				if _, ok, _ := o.Has(bg, "F", a.SHA); !ok {
					t.Error("Has no longer finds the corrupt blob")
				}
			}
		}
		// This machine's own copy damaged.
		for _, p := range e.copies("F", a.SHA) {
			writeFile(t, p, []byte("bit rot"))
			_, err := readAll(e.Store, "F", a.SHA)
			wantKind(t, "Open of a corrupt local copy", err, errs.ErrCorrupt, a.SHA)
			// By path too (S3 fetches it again, and the store of record's
			// copy is damaged above).
			_, err = e.LocalFile(bg, "F", a.SHA)
			wantKind(t, "LocalFile of a corrupt local copy", err, errs.ErrCorrupt, a.SHA)
		}
	}},
	{"logs: written here, saved, read anywhere", func(t *testing.T, e *env) {
		p := e.LogFile("F", "1", "start", "1", 0, Stdout)
		if p == "" || p != e.LogFile("F", "1", "start", "1", 0, Stdout) || p == e.LogFile("F", "1", "start", "1", 0, Stderr) {
			t.Fatalf("LogFile = %q", p)
		}
		if b, err := e.ReadLog(bg, "F", "1", "start", "1", 0, Stdout); err != nil || len(b) != 0 {
			t.Fatalf("a log never written = %q, %v; want empty", b, err)
		}
		writeFile(t, p, []byte("line 1\n"))
		if b, err := e.ReadLog(bg, "F", "1", "start", "1", 0, Stdout); err != nil || string(b) != "line 1\n" {
			t.Fatalf("the running log here = %q, %v", b, err)
		}
		writeFile(t, p, []byte("line 1\nline 2\n"))
		if err := e.SaveLogs(bg, "F", "1", "start", "1", 0); err != nil {
			t.Fatal(err)
		}
		o := e.other()
		if b, err := o.ReadLog(bg, "F", "1", "start", "1", 0, Stdout); err != nil || string(b) != "line 1\nline 2\n" {
			t.Fatalf("the saved log elsewhere = %q, %v", b, err)
		}
		if b, err := o.ReadLog(bg, "F", "1", "start", "1", 0, Stderr); err != nil || len(b) != 0 {
			t.Fatalf("a stream never written, elsewhere = %q, %v", b, err)
		}
	}},
	{"atomic: failed writes leave nothing visible", func(t *testing.T, e *env) {
		for _, n := range []int{100, 9 << 20} {
			if _, err := e.Put(bg, "F", &failingReader{n: n}); err == nil || !strings.Contains(err.Error(), "the producer died") {
				t.Fatalf("Put from a failing reader: %v", err)
			}
		}
		if got := e.files(BlobDir("F")); len(got) != 0 {
			t.Fatalf("failed puts left %v", got)
		}
		staging, err := e.Staging(bg, "F")
		if err != nil {
			t.Fatal(err)
		}
		if got := walk(staging); len(got) != 0 {
			t.Fatalf("failed puts left in staging: %v", got)
		}
		if _, err := e.PutFile(bg, "F", staging+"/missing.mpk"); err == nil {
			t.Fatal("PutFile of a missing file succeeded")
		}
		// Readers of a record being rewritten see one version or the other.
		task := &Task{Flow: "F", RunID: "1", Step: "start", TaskID: "1", Status: StatusRunning}
		if err := e.PutTask(bg, task); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := e.other()
			for {
				select {
				case <-done:
					return
				default:
				}
				if got, err := o.GetTask(bg, "F", "1", "start", "1"); err != nil || got.TaskID != "1" {
					t.Errorf("GetTask during rewrites = %+v, %v", got, err)
					return
				}
			}
		}()
		for i := 0; i < 20; i++ {
			task.Attempts = append(task.Attempts, Attempt{Attempt: i, Error: strings.Repeat("e", 1000*i)})
			if err := e.PutTask(bg, task); err != nil {
				t.Fatal(err)
			}
		}
		close(done)
		wg.Wait()
		// Concurrent puts of one content: one blob, whole.
		content := bytes.Repeat([]byte("same"), 1<<18)
		arts := make([]Artifact, 4)
		for i := range arts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if arts[i], err = e.Put(bg, "F", bytes.NewReader(content)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if arts[0] != arts[3] || arts[1] != arts[2] || arts[0].SHA != shaHex(content) {
			t.Fatalf("concurrent puts = %v", arts)
		}
		if b, err := readAll(e.other(), "F", arts[0].SHA); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("the blob of concurrent puts: %d bytes, %v", len(b), err)
		}
	}},
	{"context: cancelled and expired contexts stop every method", func(t *testing.T, e *env) {
		held, err := e.Put(bg, "F", strings.NewReader("held"))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.PutCode(bg, "F", "1", []byte("code")); err != nil {
			t.Fatal(err)
		}
		cancelled, cancel := context.WithCancel(bg)
		cancel()
		expired, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Second))
		defer cancel2()
		for _, c := range cancellable {
			for _, tc := range []struct {
				ctx  context.Context
				want error
			}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
				if err := c.call(tc.ctx, e, held.SHA); !errors.Is(err, tc.want) {
					t.Errorf("%s: %v; want %v", c.method, err, tc.want)
				}
			}
		}
		// Nothing was written by the refused calls.
		if ids, _ := e.ListRuns(bg, "F"); strings.Join(ids, ",") != "1" {
			t.Errorf("refused NewRun and PutRun made runs: %v, want only 1 (its code)", ids)
		}
		if ids, _ := e.ListTasks(bg, "F", "1", "s"); len(ids) != 0 {
			t.Errorf("a refused PutTask made task %v", ids)
		}
		if _, ok, _ := e.Has(bg, "F", shaHex([]byte("new"))); ok {
			t.Error("a refused Put stored its blob")
		}
		// A transfer under way stops when its context is cancelled (Ctrl-C),
		// and stores nothing.
		before := len(e.files(BlobDir("F")))
		ctx, cancel := context.WithCancel(bg)
		_, err = e.Put(ctx, "F", &cancellingReader{n: 4 << 20, at: 1 << 20, cancel: cancel})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Put cancelled under way: %v; want context.Canceled", err)
		}
		if after := e.files(BlobDir("F")); len(after) != before {
			t.Errorf("a cancelled Put stored something: %v", after)
		}
		// A reader stops when its context is cancelled.
		content := make([]byte, 1<<20)
		a, err := e.Put(bg, "F", bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []Store{e.Store, e.other()} {
			ctx, cancel := context.WithCancel(bg)
			rc, err := s.Open(ctx, "F", a.SHA)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
				t.Fatal(err)
			}
			cancel()
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("reading after cancel: %v; want context.Canceled", err)
			}
		}
	}},
}
