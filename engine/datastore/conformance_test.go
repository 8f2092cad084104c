//go:build linux

package datastore

// The conformance suite: one table of behaviours (conformance_cases_test.go)
// that every implementation of Store must show, run against Local and S3 on
// moto_server. Each behaviour gets a fresh, empty datastore.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/metaflow-r/metaflow/internal/s3io"
)

// env is one fresh datastore under test, with ways around it.
type env struct {
	Store
	// other is another handle on the same datastore: another machine
	// (S3: its own empty cache), or the same folder (local).
	other func() Store
	// write puts bytes at a layout path of the datastore of record (an S3
	// object, a file), around the store.
	write func(rel string, b []byte)
	// files lists what the datastore of record holds below a layout path
	// (relative names, sorted).
	files func(rel string) []string
	// copies lists this handle's local files holding a blob.
	copies func(flow, sha string) []string
	// fetches: LocalFile on another machine downloads (and checks) the blob.
	fetches bool
}

// impls are the implementations under test.
var impls = []struct {
	name  string
	fresh func(t *testing.T) *env
}{
	{"local", freshLocal},
	{"s3", freshS3},
}

func freshLocal(t *testing.T) *env {
	root := filepath.Join(t.TempDir(), ".metaflow")
	l := NewLocal(root)
	return &env{
		Store: l,
		other: func() Store { return NewLocal(root) },
		write: func(rel string, b []byte) { writeFile(t, LocalPath(root, rel), b) },
		files: func(rel string) []string { return walk(LocalPath(root, rel)) },
		copies: func(flow, sha string) []string {
			if p := LocalPath(root, Blob(flow, sha)); exists(p) {
				return []string{p}
			}
			return nil
		},
	}
}

func freshS3(t *testing.T) *env {
	t.Helper()
	if skipS3 != "" {
		t.Skip(skipS3)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := s3io.New(cfg)
	bucket := fmt.Sprintf("mf-conf-%d", bucketSeq.Add(1))
	if err := c.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	const prefix = "conf/prefix"
	open := func() *S3 {
		s, err := NewS3(c, "s3://"+bucket+"/"+prefix, filepath.Join(t.TempDir(), "cache"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	return &env{
		Store: s,
		other: func() Store { return open() },
		write: func(rel string, b []byte) {
			if err := c.PutBytes(context.Background(), bucket, Key(prefix, rel), b); err != nil {
				t.Fatal(err)
			}
		},
		files: func(rel string) []string {
			keys, err := c.ListKeys(context.Background(), bucket, Key(prefix, rel))
			if err != nil {
				t.Fatal(err)
			}
			return keys
		},
		copies: func(flow, sha string) []string {
			if p := s.cache.path(Blob(flow, sha)); exists(p) {
				return []string{p}
			}
			return nil
		},
		fetches: true,
	}
}

func TestConformance(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) { b.run(t, im.fresh(t)) })
			}
		})
	}
}

// Every method of every interface is in the cancellation table, and the
// methods that take no context compute names only.
func TestConformanceCoversEveryMethod(t *testing.T) {
	covered := map[string]bool{"Location": true, "LogFile": true}
	for _, c := range cancellable {
		covered[c.method] = true
	}
	for _, iface := range []reflect.Type{
		reflect.TypeOf((*Metadata)(nil)).Elem(),
		reflect.TypeOf((*Blobs)(nil)).Elem(),
		reflect.TypeOf((*Logs)(nil)).Elem(),
	} {
		for i := 0; i < iface.NumMethod(); i++ {
			m := iface.Method(i)
			if !covered[m.Name] {
				t.Errorf("%s.%s is not in the cancellation table", iface.Name(), m.Name)
			}
			takesCtx := m.Type.NumIn() > 0 && m.Type.In(0) == reflect.TypeOf((*context.Context)(nil)).Elem()
			if takesCtx == (m.Name == "Location" || m.Name == "LogFile") {
				t.Errorf("%s.%s: context first = %v", iface.Name(), m.Name, takesCtx)
			}
		}
	}
}

// Helpers of the behaviours.

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// walk lists the files below dir, relative, sorted ("/"-separated).
func walk(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// stage writes content to a new file in the store's staging folder.
func stage(t *testing.T, s Store, content []byte) string {
	t.Helper()
	dir, err := s.Staging(bg, "F")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "out-*.mpk")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(content)
	f.Close()
	return f.Name()
}

// readAll reads a blob whole through Open.
func readAll(s Store, flow, sha string) ([]byte, error) {
	rc, err := s.Open(bg, flow, sha)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// wantKind fails unless err is of kind (errors.Is) and names every word.
func wantKind(t *testing.T, what string, err, kind error, words ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: %v; want %v", what, err, kind)
		return
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not name %q", what, err, w)
		}
	}
}

// failingReader gives n bytes, then fails.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("the producer died")
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// cancellingReader gives n bytes and calls cancel once it gave at.
type cancellingReader struct {
	n, at  int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n)
	c.n -= k
	if c.at -= k; c.at <= 0 {
		c.cancel()
	}
	return k, nil
}

// unreadable fails the test that reads it.
type unreadable struct{ t *testing.T }

func (u unreadable) Read(p []byte) (int, error) {
	u.t.Error("read a blob the store holds already")
	return 0, io.EOF
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cancellable calls every method that takes a context, with ctx (held is a
// blob the store holds).
var cancellable = []struct {
	method string
	call   func(ctx context.Context, e *env, held string) error
}{
	{"NewRun", func(ctx context.Context, e *env, _ string) error { return e.NewRun(ctx, &Run{Flow: "F"}) }},
	{"PutRun", func(ctx context.Context, e *env, _ string) error { return e.PutRun(ctx, &Run{Flow: "F", RunID: "5"}) }},
	{"GetRun", func(ctx context.Context, e *env, _ string) error { _, err := e.GetRun(ctx, "F", "1"); return err }},
	{"ListRuns", func(ctx context.Context, e *env, _ string) error { _, err := e.ListRuns(ctx, "F"); return err }},
	{"ListFlows", func(ctx context.Context, e *env, _ string) error { _, err := e.ListFlows(ctx); return err }},
	{"ListSteps", func(ctx context.Context, e *env, _ string) error { _, err := e.ListSteps(ctx, "F", "1"); return err }},
	{"PutTask", func(ctx context.Context, e *env, _ string) error {
		return e.PutTask(ctx, &Task{Flow: "F", RunID: "1", Step: "s", TaskID: "1"})
	}},
	{"GetTask", func(ctx context.Context, e *env, _ string) error {
		_, err := e.GetTask(ctx, "F", "1", "s", "1")
		return err
	}},
	{"ListTasks", func(ctx context.Context, e *env, _ string) error {
		_, err := e.ListTasks(ctx, "F", "1", "s")
		return err
	}},
	{"PutTask with artifacts", func(ctx context.Context, e *env, _ string) error {
		return e.PutTask(ctx, &Task{Flow: "F", RunID: "1", Step: "s", TaskID: "1", Status: StatusCompleted, Artifacts: map[string]Artifact{}})
	}},
	{"GetArtifacts", func(ctx context.Context, e *env, _ string) error {
		_, err := e.GetArtifacts(ctx, "F", "1", "s", "1")
		return err
	}},
	{"PutPackage", func(ctx context.Context, e *env, _ string) error { return e.PutPackage(ctx, "F", "1", nil) }},
	{"GetPackage", func(ctx context.Context, e *env, _ string) error { _, err := e.GetPackage(ctx, "F", "1"); return err }},
	{"PutCode", func(ctx context.Context, e *env, _ string) error { return e.PutCode(ctx, "F", "2", []byte("c")) }},
	{"CodeFile", func(ctx context.Context, e *env, _ string) error { _, err := e.CodeFile(ctx, "F", "1"); return err }},
	{"Has", func(ctx context.Context, e *env, held string) error { _, _, err := e.Has(ctx, "F", held); return err }},
	{"Put", func(ctx context.Context, e *env, _ string) error {
		_, err := e.Put(ctx, "F", strings.NewReader("new"))
		return err
	}},
	{"PutSHA", func(ctx context.Context, e *env, _ string) error {
		_, err := e.PutSHA(ctx, "F", shaHex([]byte("new")), strings.NewReader("new"))
		return err
	}},
	{"PutFile", func(ctx context.Context, e *env, _ string) error {
		dir, err := e.Staging(bg, "F")
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, "x")
		if err != nil {
			return err
		}
		f.WriteString("new")
		f.Close()
		defer os.Remove(f.Name())
		_, err = e.PutFile(ctx, "F", f.Name())
		return err
	}},
	{"Open", func(ctx context.Context, e *env, held string) error {
		rc, err := e.Open(ctx, "F", held)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		return err
	}},
	{"LocalFile", func(ctx context.Context, e *env, held string) error {
		_, err := e.LocalFile(ctx, "F", held)
		return err
	}},
	{"Staging", func(ctx context.Context, e *env, _ string) error { _, err := e.Staging(ctx, "F"); return err }},
	{"SaveLogs", func(ctx context.Context, e *env, _ string) error { return e.SaveLogs(ctx, "F", "1", "s", "1", 0) }},
	{"ReadLog", func(ctx context.Context, e *env, _ string) error {
		_, err := e.ReadLog(ctx, "F", "1", "s", "1", 0, Stdout)
		return err
	}},
}
