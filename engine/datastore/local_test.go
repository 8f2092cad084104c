package datastore

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// bg is the context of the tests' datastore calls.
var bg = context.Background()

func TestConcurrentRunsGetUniqueIDs(t *testing.T) {
	store := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := &Run{Flow: "F", Status: StatusRunning}
			if err := store.NewRun(bg, r); err != nil {
				t.Error(err)
			}
			ids[i] = r.RunID
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("run id %s allocated twice: %v", id, ids)
		}
		seen[id] = true
	}
	got, _ := store.ListRuns(bg, "F")
	if len(got) != n || got[0] != "20" {
		t.Fatalf("ListRuns = %v", got)
	}
}

func TestPutFileIsContentAddressed(t *testing.T) {
	dir := t.TempDir()
	store := NewLocal(filepath.Join(dir, ".metaflow"))
	stage := func(content string) string {
		f, _ := os.CreateTemp(dir, "stage")
		f.WriteString(content)
		f.Close()
		return f.Name()
	}
	a1, err := store.PutFile(bg, "F", stage("hello"))
	if err != nil {
		t.Fatal(err)
	}
	staged := stage("hello")
	a2, err := store.PutFile(bg, "F", staged)
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 || a1.Size != 5 || a1.SHA != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("blobs %v %v", a1, a2)
	}
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Fatalf("the staged copy of a blob already stored is left: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(store.Root, "F", "data", a1.SHA[:2], a1.SHA))
	if string(b) != "hello" {
		t.Fatalf("blob content %q", b)
	}
}

// A writer that fails half-way leaves neither a partial file nor a temp file.
func TestAtomicWriteLeavesNothingOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "_task.json")
	err := writeAtomic(bg, path, func(w io.Writer) error {
		w.Write([]byte(`{"status": "compl`))
		return os.ErrClosed
	})
	if err == nil {
		t.Fatal("want error")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		t.Fatalf("left behind: %s", strings.Join(names, ","))
	}
}

func TestTasksVisibleOnlyWithMetadata(t *testing.T) {
	store := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	os.MkdirAll(filepath.Join(store.Root, "F", "1", "start", "1"), 0o755) // logs only, no _task.json yet
	if ids, _ := store.ListTasks(bg, "F", "1", "start"); len(ids) != 0 {
		t.Fatalf("task without metadata listed: %v", ids)
	}
	if err := store.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: "start", TaskID: "2", Status: StatusCompleted}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := store.ListTasks(bg, "F", "1", "start"); len(ids) != 1 || ids[0] != "2" {
		t.Fatalf("ListTasks = %v", ids)
	}
}
