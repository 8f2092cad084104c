package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// localFiles counts LocalFile calls by sha.
type localFiles struct {
	*datastore.Local
	mu    sync.Mutex
	calls map[string]int
}

func (s *localFiles) LocalFile(ctx context.Context, flow, sha string) (datastore.BlobFile, error) {
	s.mu.Lock()
	s.calls[sha]++
	s.mu.Unlock()
	return s.Local.LocalFile(ctx, flow, sha)
}

func TestSpecsCarryTheStampsTheirFilesWereVerifiedUnder(t *testing.T) {
	ex := &fakeExec{steps: map[string]stepFunc{"start": splits(3)}}
	r, _ := newRun(t, foreachGraph(t), ex, Options{})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	check := func(what, path string, st *SpecStamp) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want, _ := datastore.StampOf(fi)
		if st == nil || *st != *StampOf(want) {
			t.Errorf("%s: stamp %+v, want the file's stat %+v", what, st, StampOf(want))
		}
	}
	for _, s := range ex.calls {
		for _, in := range s.Inputs {
			for name, a := range in.Artifacts {
				check(fmt.Sprintf("%s's input %s", s.Step, name), a.Path, a.Stamp)
			}
		}
		if s.Input != nil {
			// The element files are gone with the run; the whole value's
			// blob is not, and an element's stamp is of its own small file.
			if s.Input.Stamp == nil || s.Input.Stamp.Size <= 0 {
				t.Errorf("%s's foreach input has no stamp: %+v", s.Step, s.Input)
			}
		}
	}
}

func TestACorruptInputFailsTheTaskBeforeItStarts(t *testing.T) {
	g, err := graph.New("V", []graph.Step{
		{Name: "start", Next: []string{"spoil"}},
		{Name: "spoil", Next: []string{"mid"}},
		{Name: "mid", Next: []string{"end"}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ex := &fakeExec{steps: map[string]stepFunc{
		"start": func(*TaskSpec) (map[string][]byte, int, int) {
			return map[string][]byte{"x": []byte("the value of x")}, -1, 0
		},
		// Damages x's blob through its file, as a stray write would.
		"spoil": func(s *TaskSpec) (map[string][]byte, int, int) {
			p := s.Inputs[0].Artifacts["x"].Path
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return nil, -1, 1
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("T"), 0); err != nil {
				t.Error(err)
				return nil, -1, 1
			}
			return nil, -1, 0
		},
	}}
	r, store := newRun(t, g, ex, Options{})
	err = execute(t, r)
	if !errors.Is(err, errs.ErrCorrupt) {
		t.Fatalf("run error %v; want ErrCorrupt", err)
	}
	id := r.RunID()
	for _, w := range []string{"task V/" + id + "/mid/", "cannot start", "'x'", "V/" + id + "/spoil/", "corrupt", "resume"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if n := len(ex.stepCalls("mid")); n != 0 {
		t.Errorf("mid was launched %d time(s) with a corrupt input", n)
	}
	if ids, _ := store.ListTasks(bg, "V", id, "mid"); len(ids) != 0 {
		t.Errorf("mid has task records %v", ids)
	}
}

func TestAJoinChecksEachBlobOnce(t *testing.T) {
	ex := &fakeExec{steps: map[string]stepFunc{
		"start": splits(5),
		// Every split makes the same artifact: one blob for the join.
		"work": func(*TaskSpec) (map[string][]byte, int, int) {
			return map[string][]byte{"same": []byte("same")}, -1, 0
		},
	}}
	r, local := newRun(t, foreachGraph(t), ex, Options{})
	store := &localFiles{Local: local, calls: map[string]int{}}
	r.Store = store
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	j := ex.stepCalls("join")
	if len(j) != 1 || len(j[0].Inputs) != 5 {
		t.Fatalf("join inputs: %+v", j)
	}
	// The join's spec names 5 inputs x 2 artifacts, 2 blobs: the splits'
	// specs check params once each (5), the join each blob once.
	params := j[0].Inputs[0].Artifacts["params"].SHA
	same := j[0].Inputs[0].Artifacts["same"].SHA
	if got := store.calls[params]; got != 5+1 { // once per split's spec, once for the join's
		t.Errorf("the foreach value was checked %d times, want 6 (each split, then the join once)", got)
	}
	if got := store.calls[same]; got != 1 {
		t.Errorf("the join's 5 inputs' shared blob was checked %d times, want once", got)
	}
}
