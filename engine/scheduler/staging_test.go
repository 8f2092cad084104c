package scheduler

import (
	"os"
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
