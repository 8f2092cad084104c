package scheduler

import (
	"context"
	"encoding/json"
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
