package datastore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzMetadataReaders: whatever bytes a run's, a task's, an artifact
// index's or a package manifest's file holds, reading it (and following what
// it names: blobs by sha, staleness) returns an error or a value, never a
// panic, and never a path outside the datastore.
func FuzzMetadataReaders(f *testing.F) {
	f.Add([]byte(`{"flow":"F","run_id":"1","status":"running","heartbeat_seconds":1}`), []byte(`{"x":{"sha":"x","size":1}}`))
	f.Add([]byte(`{"status":"completed","steps":["start"]}`), []byte(`{"a":{"sha":"../../../../etc/passwd","size":-1}}`))
	f.Add([]byte(`{"attempts":[{"attempt":0}],"foreach_stack":[{"step":"s","index":-1,"count":0}]}`), []byte(`{"a":{"sha":"`+
		"0000000000000000000000000000000000000000000000000000000000000000"+`","size":3}}`))
	f.Add([]byte(`{`), []byte(`[]`))
	f.Add([]byte(`null`), []byte(`{"":{}}`))
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, record, index []byte) {
	ctx := context.Background()
	root := t.TempDir()
	l := NewLocal(root)
	write := func(rel string, b []byte) {
		p := LocalPath(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
	}
	write(RunRecord("F", "1"), record)
	write(TaskRecord("F", "1", "s", "1"), record)
	write(ArtifactIndex("F", "1", "s", "1"), index)
	write(PackageManifest("F", "1"), index)
	if run, err := l.GetRun(ctx, "F", "1"); err == nil && run != nil {
		task, _ := l.GetTask(ctx, "F", "1", "s", "1")
		Settle(time.Now(), run, task)
	}
	l.ListRuns(ctx, "F")
	l.ListTasks(ctx, "F", "1", "s")
	l.ListSteps(ctx, "F", "1")
	l.ListFlows(ctx)
	for _, get := range []func() (map[string]Artifact, error){
		func() (map[string]Artifact, error) { return l.GetArtifacts(ctx, "F", "1", "s", "1") },
		func() (map[string]Artifact, error) { return l.GetPackage(ctx, "F", "1") },
	} {
		arts, err := get()
		if err != nil {
			continue
		}
		for _, a := range arts {
			if f, err := l.LocalFile(ctx, "F", a.SHA); err == nil {
				if rel, rerr := filepath.Rel(root, f.Path); rerr != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
					t.Fatalf("sha %q became a path outside the datastore: %s", a.SHA, f.Path)
				}
			}
			if r, err := l.Open(ctx, "F", a.SHA); err == nil {
				r.Close()
			}
			l.Has(ctx, "F", a.SHA)
		}
	}
}
