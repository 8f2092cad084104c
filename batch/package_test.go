//go:build linux

package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

func TestPlacePackage(t *testing.T) {
	t.Run("files land at their paths", func(t *testing.T) {
		dir := t.TempDir()
		pkg := map[string]string{
			"flow.R":          strings.Repeat("a1", 32),
			"movies.csv":      strings.Repeat("b2", 32),
			"data/x.csv":      strings.Repeat("c3", 32),
			"data/deep/y.csv": strings.Repeat("c3", 32), // same blob at two paths
		}
		var mu sync.Mutex
		var keys []string
		err := scheduler.PlacePackage(pkg, dir, func(sha, dst string) error {
			mu.Lock()
			keys = append(keys, sha)
			mu.Unlock()
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return os.WriteFile(dst, []byte("from "+sha), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		for p, k := range pkg {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
			if err != nil || string(b) != "from "+k {
				t.Errorf("%s: %q, %v; want the blob %s", p, b, err, k)
			}
		}
		if len(keys) != len(pkg) {
			t.Errorf("downloads %v; want one per path", keys)
		}
	})
	for _, bad := range []map[string]string{
		{"ok.R": "k1", "../escape.R": "k2"},
		{"/etc/cron.d/x": "k1"},
		{"a/./b.R": "k1"},
		{"data": "k1", "data/x.csv": "k2"},
	} {
		t.Run("refused", func(t *testing.T) {
			dir := t.TempDir()
			called := false
			err := scheduler.PlacePackage(bad, dir, func(key, dst string) error { called = true; return nil })
			if err == nil || !strings.HasPrefix(err.Error(), "code package: ") {
				t.Fatalf("scheduler.PlacePackage(%v) = %v; want a refusal", bad, err)
			}
			if called {
				t.Fatal("a file was downloaded although the package was refused")
			}
		})
	}
	t.Run("a failed download fails", func(t *testing.T) {
		err := scheduler.PlacePackage(map[string]string{"a.R": "k1", "b.csv": "k2"}, t.TempDir(), func(key, dst string) error {
			if key == "k2" {
				return errors.New("no such S3 object")
			}
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "download code package file b.csv: no such S3 object") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestEmuExecutorCodePackage runs a Batch step that reads files of the
// code package by relative path (./movies.csv, ./data/x.csv) in the
// container: twice with a local datastore (the second run uploads no new
// object), then with the S3 datastore from an empty cache.
func TestEmuExecutorCodePackage(t *testing.T) {
	f, exe, local := testExecutor(t)
	g, err := graph.New("PackageFlowR", []graph.Step{
		{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch", Args: map[string]string{"memory": "512"}}}},
		{Name: "end"},
	})
	if err != nil {
		t.Fatal(err)
	}
	code := codeBundle(t, `
		start = function(self) {
			m <- read.csv("./movies.csv")
			self$titles <- paste(m$title, collapse = "|")
			self$x <- sum(read.csv("./data/x.csv")$x)
		},
		end = function(self) cat("titles:", self$titles, "x:", self$x, "\n")`)
	pkg := []scheduler.PackageFile{
		{Path: "flow.R", Content: []byte("# the flow\n")},
		{Path: "movies.csv", Content: []byte("title,year\nHeat,1995\nAlien,1979\n")},
		{Path: "data/x.csv", Content: []byte("x\n1\n2\n39\n")},
	}
	root := t.TempDir()
	store := datastore.NewLocal(filepath.Join(root, ".metaflow"))
	raw := s3.NewFromConfig(f.cfg, func(o *s3.Options) { o.UsePathStyle = true; o.BaseEndpoint = aws.String(emu.live) })
	objects := func() []string {
		var keys []string
		p := s3.NewListObjectsV2Paginator(raw, &s3.ListObjectsV2Input{Bucket: aws.String(exe.bucket), Prefix: aws.String("metaflow/PackageFlowR/data/")})
		for p.HasMorePages() {
			page, err := p.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page.Contents {
				keys = append(keys, aws.ToString(o.Key))
			}
		}
		sort.Strings(keys)
		return keys
	}
	run := func(store datastore.Store) string {
		var mu sync.Mutex
		var lines []string
		r := &scheduler.Run{
			Graph: g, Store: store, Exec: local, Executors: executors(t, exe), Code: code, Package: append([]scheduler.PackageFile(nil), pkg...),
			Opts: scheduler.Options{MaxWorkers: 1, MaxNumSplits: 1, User: "tester", Workdir: root, Rscript: "Rscript"},
			Emit: func(ev scheduler.Event) { mu.Lock(); lines = append(lines, ev.Line); mu.Unlock() },
		}
		if err := r.Prepare(f.ctx); err != nil {
			t.Fatal(err)
		}
		err := r.Execute(f.ctx)
		all := strings.Join(lines, "\n")
		if err != nil {
			t.Fatalf("run %s failed: %v\n%s", r.RunID(), err, all)
		}
		if !strings.Contains(all, "titles: Heat|Alien x: 42") || !strings.Contains(all, "/start/1 (pid 0)] Batch job ") {
			t.Fatalf("run %s: console lacks the step's reading of the package on Batch:\n%s", r.RunID(), all)
		}
		return r.RunID()
	}
	var after [3][]string
	for i := range 2 {
		run(store)
		after[i] = objects()
	}
	// The S3 datastore on another machine (an empty cache) finds every blob
	// in S3 already (the runs above sent them there): none is uploaded, and
	// the jobs get the package from S3 although this machine has no copy.
	s3store, err := datastore.NewS3(exe.s3, exe.cfg.S3Root, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	id := run(s3store)
	after[2] = objects()
	if man, err := s3store.GetPackage(f.ctx, "PackageFlowR", id); err != nil || len(man) != len(pkg) {
		t.Errorf("S3 manifest of run %s = %v, %v", id, man, err)
	}
	// The package's blobs are in S3 under the flow's data keys; the S3
	// datastore's machine did not stage them again.
	for _, pf := range pkg {
		sum := sha256.Sum256(pf.Content)
		sha := hex.EncodeToString(sum[:])
		if k := datastore.Key("metaflow", datastore.Blob("PackageFlowR", sha)); !containsString(after[0], k) {
			t.Errorf("%s's blob %s is not in S3: %v", pf.Path, k, after[0])
		}
		if _, ok := datastore.LocalCopy(s3store, "PackageFlowR", sha); ok {
			t.Errorf("%s's blob was written again by the S3 datastore's run", pf.Path)
		}
	}
	for i := 1; i < len(after); i++ {
		if strings.Join(after[i], ",") != strings.Join(after[0], ",") {
			t.Errorf("run %d added objects:\nbefore %v\nafter  %v", i+1, after[0], after[i])
		}
	}
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// The task runner's inputs come from the blob store by sha, and its outputs
// go into it: each staged file renamed in (hashed once, not copied) and
// named by its sha for the executor.
func TestTaskRunnerBlobs(t *testing.T) {
	ctx := context.Background()
	blobs := datastore.NewLocal(filepath.Join(t.TempDir(), "cache"))
	in, err := blobs.Put(ctx, "F", strings.NewReader("input"))
	if err != nil {
		t.Fatal(err)
	}
	split, err := blobs.Put(ctx, "F", strings.NewReader("split"))
	if err != nil {
		t.Fatal(err)
	}
	spec := &scheduler.TaskSpec{Flow: "F", RunID: "1",
		Inputs: []scheduler.SpecInput{{Step: "start", TaskID: "1", Artifacts: map[string]scheduler.SpecArtifact{
			"a": {SHA: in.SHA}, "b": {SHA: in.SHA}}}},
		Input: &scheduler.SpecSplit{SHA: split.SHA, Index: 1}}
	if err := fetchInputs(ctx, blobs, spec); err != nil {
		t.Fatal(err)
	}
	// The runtime gets each file with the stamp it was verified under.
	stampOf := func(p string) *scheduler.SpecStamp {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := datastore.StampOf(fi)
		return scheduler.StampOf(st)
	}
	for name, a := range spec.Inputs[0].Artifacts {
		if b, err := os.ReadFile(a.Path); err != nil || string(b) != "input" {
			t.Errorf("input %s at %q: %q, %v", name, a.Path, b, err)
		}
		if a.Stamp == nil || *a.Stamp != *stampOf(a.Path) {
			t.Errorf("input %s: stamp %+v, want its file's %+v", name, a.Stamp, stampOf(a.Path))
		}
	}
	if b, err := os.ReadFile(spec.Input.Path); err != nil || string(b) != "split" {
		t.Errorf("split input at %q: %q, %v", spec.Input.Path, b, err)
	}
	if spec.Input.Stamp == nil || *spec.Input.Stamp != *stampOf(spec.Input.Path) {
		t.Errorf("split input: stamp %+v, want its file's", spec.Input.Stamp)
	}
	// A damaged copy is refused, naming the artifact.
	if err := os.WriteFile(spec.Input.Path, []byte("SPLIT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fetchInputs(ctx, blobs, spec); !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), "foreach value") {
		t.Errorf("a corrupt input: %v, want ErrCorrupt naming it", err)
	}
	os.WriteFile(spec.Input.Path, []byte("split"), 0o644)
	spec.Inputs[0].Artifacts["c"] = scheduler.SpecArtifact{SHA: strings.Repeat("ab", 32)}
	if err := fetchInputs(ctx, blobs, spec); !errors.Is(err, errs.ErrNotFound) || !strings.Contains(err.Error(), "artifact 'c' of F/1/start/1") {
		t.Errorf("a missing input: %v, want ErrNotFound naming it", err)
	}

	out := stagedOutputs(t, blobs)
	files := map[string]string{"x.mpk": "value x", "y.mpk": "value y", "_result.mpk": "result", "notes.txt": "no artifact"}
	inodes := map[string]os.FileInfo{}
	for n, c := range files {
		p := filepath.Join(out, n)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		inodes[n], _ = os.Stat(p)
	}
	outputs, err := putOutputs(ctx, blobs, nil, "F", out)
	if err != nil {
		t.Fatal(err)
	}
	if len(outputs) != 2 {
		t.Fatalf("outputs %v, want x and y", outputs)
	}
	for name, want := range map[string]string{"x": "value x", "y": "value y"} {
		sum := sha256.Sum256([]byte(want))
		if outputs[name] != hex.EncodeToString(sum[:]) {
			t.Errorf("output %s = %s, want the sha256 of %q", name, outputs[name], want)
		}
		f, ok := datastore.LocalCopy(blobs, "F", outputs[name])
		if fi, err := os.Stat(f.Path); !ok || err != nil || !os.SameFile(fi, inodes[name+".mpk"]) {
			t.Errorf("output %s was copied, not renamed into the store (%v)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "_result.mpk")); err != nil {
		t.Errorf("the result is not an artifact: %v", err)
	}
}
