package scheduler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
)

func TestValidatePackagePath(t *testing.T) {
	for _, tc := range []struct {
		path, why string // why: "" when valid, else part of the error
	}{
		{"flow.R", ""},
		{"data/x.csv", ""},
		{"a/b/c/d.R", ""},
		{".hidden/x.R", ""},
		{"dir.with.dots/x..y.csv", ""},
		{"", "it is empty"},
		{"/etc/passwd", "it is absolute"},
		{"../x.R", `".." element`},
		{"data/../../x.R", `".." element`},
		{"a/..", `".." element`},
		{"..", `".." element`},
		{"./x.R", `not clean (as "x.R")`},
		{"a//b.R", `not clean (as "a/b.R")`},
		{"a/./b.R", `not clean (as "a/b.R")`},
		{"a/", `not clean (as "a")`},
		{".", "not clean"},
		{"a\x00b", "NUL"},
		{`data\x.csv`, `"\"`},
	} {
		err := ValidatePackagePath(tc.path)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("%q: %v; want valid", tc.path, err)
		case tc.why != "" && err == nil:
			t.Errorf("%q: valid; want an error with %q", tc.path, tc.why)
		case tc.why != "" && !strings.Contains(err.Error(), tc.why):
			t.Errorf("%q: %v; want it to say %q", tc.path, err, tc.why)
		case err != nil && (strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "code package: invalid path ")):
			t.Errorf("%q: %q is not one line naming the path", tc.path, err)
		}
	}
}

func TestValidatePackage(t *testing.T) {
	f := func(p string, n int) PackageFile { return PackageFile{Path: p, Content: make([]byte, n)} }
	for _, tc := range []struct {
		name  string
		files []PackageFile
		want  string
	}{
		{"none", nil, ""},
		{"ok", []PackageFile{f("flow.R", 10), f("data/x.csv", 5), f("data/sub/y.csv", 0)}, ""},
		{"bad path", []PackageFile{f("flow.R", 1), f("../up.R", 1)}, `invalid path "../up.R"`},
		{"twice", []PackageFile{f("a.R", 1), f("b.R", 1), f("a.R", 2)}, `path "a.R" is given twice`},
		{"file and folder", []PackageFile{f("data", 1), f("data/sub/x.csv", 1)}, `"data" is a file and also the folder of "data/sub/x.csv"`},
		{"at the limit", []PackageFile{f("a.bin", MaxPackageBytes-1), f("b.R", 1)}, ""},
		{"over the limit", []PackageFile{f("small.R", 10), f("big.csv", 60<<20), f("mid.rds", 30<<20), f("x.csv", 10<<20+1), f("tiny.R", 1)},
			"the code package is 100.1 MB, over the limit of 100 MB: largest files big.csv (60 MB), mid.rds (30 MB), x.csv (10.0 MB); choose the files with --package-suffixes (run(package_suffixes = ...))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePackage(tc.files)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("%v; want valid", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v; want one line with %q", err, tc.want)
			}
		})
	}
}

// pkgExec records the code package each task was launched with and the
// blobs it can read the files from.
type pkgExec struct {
	fakeExec
	mu    sync.Mutex
	seen  map[string][]CodeFile // step -> package
	blobs map[string]datastore.Blobs
}

func (e *pkgExec) Run(ctx context.Context, l *Launch) (int, error) {
	e.mu.Lock()
	e.seen[l.Spec.Step] = l.Package
	e.blobs[l.Spec.Step] = l.Blobs
	e.mu.Unlock()
	return e.fakeExec.Run(ctx, l)
}

// blobs lists the flow's blob files with their modification times.
func blobs(t *testing.T, root string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.WalkDir(filepath.Join(root, "F", "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			out[p] = fi.ModTime().UnixNano()
		}
		return nil
	})
	return out
}

// readBlob reads a blob whole, through its checked reader.
func readBlob(blobs datastore.Blobs, flow, sha string) ([]byte, error) {
	rc, err := blobs.Open(bg, flow, sha)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestCodePackageIsStoredOnceAndGivenToTasks(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	files := []PackageFile{
		{Path: "flow.R", Content: []byte("metaflow('F')\n")},
		{Path: "movies.csv", Content: []byte("title,year\nA,1999\n")},
		{Path: "data/x.csv", Content: []byte("x\n1\n")},
		{Path: "data/copy.csv", Content: []byte("x\n1\n")}, // same content as data/x.csv
		{Path: "empty.R", Content: []byte{}},
	}
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	run := func() (*Run, *pkgExec) {
		ex := &pkgExec{seen: map[string][]CodeFile{}, blobs: map[string]datastore.Blobs{}}
		r := &Run{Graph: g, Store: store, Exec: ex, Code: []byte("code"), Opts: Options{MaxWorkers: 2, MaxNumSplits: 10},
			Package: append([]PackageFile(nil), files...)}
		if err := execute(t, r); err != nil {
			t.Fatal(err)
		}
		return r, ex
	}
	r1, ex := run()
	first := blobs(t, root)
	if len(first) != 4 { // four distinct contents, no artifacts
		t.Fatalf("blobs after the first run: %v; want 4", first)
	}
	man, err := store.GetPackage(bg, "F", r1.RunID())
	if err != nil || len(man) != len(files) {
		t.Fatalf("manifest = %v, %v", man, err)
	}
	for _, f := range files {
		if a := man[f.Path]; a.SHA != shaOf(f.Content) || a.Size != int64(len(f.Content)) {
			t.Errorf("manifest entry of %s = %+v", f.Path, a)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "F", r1.RunID(), "_package.json")); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"start", "end"} {
		got := ex.seen[step]
		var paths []string
		for _, cf := range got {
			paths = append(paths, cf.Path)
			b, err := readBlob(ex.blobs[step], "F", cf.SHA)
			if err != nil {
				t.Fatalf("%s: %s: %v", step, cf.Path, err)
			}
			for _, f := range files {
				if f.Path == cf.Path && (!bytes.Equal(b, f.Content) || cf.SHA != shaOf(b) || cf.Size != int64(len(b))) {
					t.Errorf("%s: %s has %q (%+v), want %q", step, cf.Path, b, cf, f.Content)
				}
			}
		}
		if !sort.StringsAreSorted(paths) || len(paths) != len(files) {
			t.Errorf("%s got package %v; want the %d files by path", step, paths, len(files))
		}
	}
	if r1.Package != nil {
		t.Error("the run kept the package's contents after storing them")
	}
	// A second run with the same files stores no new blob and rewrites none.
	r2, _ := run()
	if again := blobs(t, root); len(again) != len(first) {
		t.Fatalf("second run: %d blobs, want %d", len(again), len(first))
	} else {
		for p, mt := range first {
			if again[p] != mt {
				t.Errorf("second run rewrote %s", p)
			}
		}
	}
	if man2, err := store.GetPackage(bg, "F", r2.RunID()); err != nil || len(man2) != len(man) || man2["movies.csv"] != man["movies.csv"] {
		t.Fatalf("second manifest = %v, %v", man2, err)
	}
}

func TestBadPackageWritesNothing(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	r, store := newRun(t, g, &fakeExec{}, Options{})
	r.Package = []PackageFile{{Path: "ok.R", Content: []byte("1")}, {Path: "/abs.R", Content: []byte("2")}}
	if err := r.Prepare(bg); err == nil || !strings.Contains(err.Error(), `invalid path "/abs.R"`) {
		t.Fatalf("Prepare = %v", err)
	}
	if _, err := os.Stat(store.Root); !os.IsNotExist(err) {
		t.Fatalf("datastore written for a bad package: %v", err)
	}
}

func TestRunWithoutPackageHasNone(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	ex := &pkgExec{seen: map[string][]CodeFile{}, blobs: map[string]datastore.Blobs{}}
	r, store := newRun(t, g, ex, Options{})
	if err := execute(t, r); err != nil {
		t.Fatal(err)
	}
	if man, err := store.GetPackage(bg, "F", r.RunID()); err != nil || man != nil {
		t.Fatalf("GetPackage = %v, %v; want none", man, err)
	}
	if got, ok := ex.seen["start"]; !ok || len(got) != 0 {
		t.Fatalf("start got package %v", got)
	}
}

// workdirExec reads, in each task's working directory, the package's files.
type workdirExec struct {
	fakeExec
	mu   sync.Mutex
	dirs map[string]string            // step -> working directory
	read map[string]map[string]string // step -> path -> content
}

func (e *workdirExec) Run(ctx context.Context, l *Launch) (int, error) {
	got := map[string]string{}
	for _, p := range []string{"flow.R", "data/x.csv"} {
		b, _ := os.ReadFile(filepath.Join(l.Workdir, filepath.FromSlash(p)))
		got[p] = string(b)
	}
	e.mu.Lock()
	e.dirs[l.Spec.Step], e.read[l.Spec.Step] = l.Workdir, got
	e.mu.Unlock()
	return e.fakeExec.Run(ctx, l)
}

func TestMissingWorkdirRunsInAPrivateFolderWithThePackage(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	files := []PackageFile{{Path: "flow.R", Content: []byte("f\n")}, {Path: "data/x.csv", Content: []byte("x\n1\n")}}
	cases := []struct {
		name, workdir string
		private       bool
	}{
		{"another machine's folder", "/nonexistent/client/project", true},
		{"no folder given", "", true},
		{"a folder of this machine", t.TempDir(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := &workdirExec{dirs: map[string]string{}, read: map[string]map[string]string{}}
			r := &Run{Graph: g, Store: datastore.NewLocal(filepath.Join(t.TempDir(), ".metaflow")), Exec: ex, Code: []byte("code"),
				Opts: Options{MaxWorkers: 2, MaxNumSplits: 10, Workdir: tc.workdir}, Package: append([]PackageFile(nil), files...)}
			if err := execute(t, r); err != nil {
				t.Fatal(err)
			}
			for _, step := range []string{"start", "end"} {
				dir := ex.dirs[step]
				if !tc.private {
					if dir != tc.workdir {
						t.Fatalf("%s ran in %q, want %q", step, dir, tc.workdir)
					}
					continue
				}
				if dir == tc.workdir || !strings.HasPrefix(filepath.Base(dir), fmt.Sprintf("metaflow-work-%d-F-1-", os.Getpid())) {
					t.Fatalf("%s ran in %q, want a private folder", step, dir)
				}
				if ex.read[step]["flow.R"] != "f\n" || ex.read[step]["data/x.csv"] != "x\n1\n" {
					t.Fatalf("%s read %v in its working directory", step, ex.read[step])
				}
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Fatalf("the private folder %s outlived the run", dir)
				}
			}
		})
	}
}
