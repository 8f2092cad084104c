package scheduler

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/metaflow-r/metaflow/engine/graph"
)

// Attempts that ended well hand their emptied staging folder to later
// attempts; a failed attempt's folder is never reused (what it started may
// still write there); the run leaves no staging folder behind.
func TestStagingFoldersAreReusedOnlyAfterGoodAttempts(t *testing.T) {
	steps := map[string]stepFunc{
		"start": splits(12),
		"work": func(s *TaskSpec) (map[string][]byte, int, int) {
			if s.Input.Index == 5 && s.Attempt == 0 {
				return nil, -1, 1
			}
			return map[string][]byte{"y": []byte{byte(s.Input.Index)}}, -1, 0
		},
	}
	ex := &fakeExec{steps: steps}
	r, store := newRun(t, foreachGraph(t), ex, Options{MaxWorkers: 1,
		With: []graph.Decorator{{Name: "retry", Args: map[string]string{"times": "1"}}}})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{}
	failedDir := ""
	for _, s := range ex.calls { // one at a time, in order
		if s.OutputDir == failedDir {
			t.Fatalf("attempt %d of %s/%d got the folder of a failed attempt", s.Attempt, s.Step, s.Index)
		}
		dirs[s.OutputDir] = true
		if s.Step == "work" && s.Input.Index == 5 && s.Attempt == 0 {
			failedDir = s.OutputDir
		}
	}
	// 16 attempts one at a time: one folder for all up to the failed
	// attempt, a fresh one after it.
	if len(dirs) != 2 || failedDir == "" {
		t.Fatalf("%d staging folders for %d attempts, want 2: %v", len(dirs), len(ex.calls), dirs)
	}
	base, err := store.Staging(bg, "F")
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Fatalf("the run left %d staging folders: %v", len(ents), ents)
	}
}

// clearStaging empties a folder of the files a task leaves besides its
// outputs, whichever of them are there, and refuses (so that the folder is
// removed, not reused) when one of those names cannot be unlinked.
func TestClearStaging(t *testing.T) {
	cases := []struct {
		name  string
		files []string // made as files
		dirs  []string // made as folders
		want  bool
	}{
		{"nothing left", nil, nil, true},
		{"warm task: result only", []string{ResultFile}, nil, true},
		{"cold task: result and spec", []string{ResultFile, SpecFileName}, nil, true},
		{"all three", []string{ResultFile, ErrorFile, SpecFileName}, nil, true},
		{"a folder where the error file goes", []string{ResultFile}, []string{ErrorFile}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range c.dirs {
				if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if got := clearStaging(dir); got != c.want {
				t.Fatalf("clearStaging = %v, want %v", got, c.want)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != len(c.dirs) {
				t.Fatalf("left %v, want only the folders %v", ents, c.dirs)
			}
		})
	}
}
