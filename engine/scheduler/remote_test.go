package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// remoteExec is an executor whose tasks leave their outputs in the
// datastore (as Batch jobs do in an S3 datastore) and only name them.
type remoteExec struct {
	store datastore.Store
	sha   string // the blob named as output x ("" : put one in the store)
}

func (e *remoteExec) Run(ctx context.Context, l *Launch) (int, error) {
	l.Started(0)
	sha := e.sha
	if sha == "" {
		staged := filepath.Join(l.Spec.OutputDir, "elsewhere")
		os.WriteFile(staged, []byte("made remotely by "+l.Spec.Step), 0o644)
		a, err := e.store.CommitBlob(l.Spec.Flow, staged)
		if err != nil {
			return -1, err
		}
		sha = a.SHA
	}
	names, _ := json.Marshal(map[string]string{"x": sha})
	if err := os.WriteFile(filepath.Join(l.Spec.OutputDir, RemoteOutputsFile), names, 0o644); err != nil {
		return -1, err
	}
	res, _ := msgpack.Marshal(map[string]any{"artifacts": []string{"x"}, "merged": []any{}, "foreach_count": -1})
	return 0, os.WriteFile(filepath.Join(l.Spec.OutputDir, "_result.mpk"), res, 0o644)
}

func TestOutputsLeftInTheStoreAreAdopted(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sha, wantErr string
	}{
		{"in the store", "", ""},
		{"missing from the store", strings.Repeat("ab", 32), "store artifact x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, store := newRun(t, g, nil, Options{})
			r.Exec = &remoteExec{store: store, sha: tc.sha}
			err := execute(t, r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			arts, err := store.GetArtifacts("F", r.RunID(), "end", "2")
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(store.BlobPath("F", arts["x"].SHA))
			if err != nil || string(b) != "made remotely by end" {
				t.Fatalf("end's x = %q, %v", b, err)
			}
		})
	}
}

// refusingBatch runs tasks like fakeExec but refuses steps in Preflight.
type refusingBatch struct {
	*fakeExec
	refuse map[string]error
	asked  []string
}

func (b *refusingBatch) Preflight(ctx context.Context, step string, decos map[string]graph.Decorator, rscript string) error {
	b.asked = append(b.asked, step)
	return b.refuse[step]
}

func TestPreflightChecksOnlyStepsThatWillRun(t *testing.T) {
	g, err := graph.New("F", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch"}}},
		{Name: "end", Decorators: []graph.Decorator{{Name: "batch"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &refusingBatch{fakeExec: &fakeExec{}}
	r, store := newRun(t, g, nil, Options{})
	r.Batch = b
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.asked, ","); got != "start,end" {
		t.Errorf("a run checked %q, want start,end", got)
	}
	// start's queue is gone since: resuming from end clones start, so it
	// is not checked; resuming from start is refused before anything.
	b.refuse = map[string]error{"start": CannotRun(errors.New("job queue gone: not found"))}
	for _, tc := range []struct{ from, wantErr, asked string }{
		{"end", "", "end"},
		{"start", "step start cannot run on AWS Batch: job queue gone: not found", "start"},
	} {
		b.asked = nil
		r2 := &Run{Graph: g, Store: store, Exec: nil, Batch: b, Code: []byte("code"),
			Opts: Options{MaxWorkers: 1, MaxNumSplits: 10, Resume: true, ResumeStep: tc.from, OriginRunID: r.RunID()}}
		err := r2.Prepare()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
			t.Errorf("resume %s: Prepare = %v, want %q", tc.from, err, tc.wantErr)
		}
		if got := strings.Join(b.asked, ","); got != tc.asked {
			t.Errorf("resume %s checked %q, want %q", tc.from, got, tc.asked)
		}
	}
	// A check that could not be made is not a refusal.
	b.refuse = map[string]error{"end": errors.New("DescribeJobQueues: connection refused")}
	r3 := &Run{Graph: g, Store: store, Batch: b, Code: []byte("code"), Opts: Options{MaxWorkers: 1, MaxNumSplits: 10}}
	if err := r3.Prepare(); err == nil || !strings.HasPrefix(err.Error(), "could not check AWS Batch for step end:") {
		t.Errorf("Prepare with a failing check = %v", err)
	}
}
