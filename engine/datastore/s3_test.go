//go:build linux

package datastore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/internal/mototest"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

var skipS3 string // why the tests needing moto_server skip, if they do

func TestMain(m *testing.M) { os.Exit(mototest.Main(m, &skipS3)) }

var bucketSeq atomic.Int32

// machines returns two S3 datastores on one fresh bucket with separate
// caches: two machines sharing the datastore of record.
func machines(t *testing.T) (a, b *S3) {
	t.Helper()
	if skipS3 != "" {
		t.Skip(skipS3)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := s3io.New(cfg)
	bucket := fmt.Sprintf("mf-ds-%d-%s", bucketSeq.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(bucket) > 63 {
		bucket = bucket[:63]
	}
	if err := c.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	open := func() *S3 {
		s, err := NewS3(c, "s3://"+bucket+"/some/prefix", filepath.Join(t.TempDir(), "cache"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return open(), open()
}

func stageFile(t *testing.T, s Store, content []byte) string {
	t.Helper()
	dir, err := s.Staging(bg, "F")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(content)
	f.Close()
	return f.Name()
}

func TestS3RunsAndTasksAreSharedBetweenMachines(t *testing.T) {
	a, b := machines(t)
	for want := 1; want <= 3; want++ {
		s := a
		if want == 2 {
			s = b // the other machine continues the sequence
		}
		r := &Run{Flow: "F", Status: StatusRunning, User: "u"}
		if err := s.NewRun(bg, r); err != nil {
			t.Fatal(err)
		}
		if r.RunID != fmt.Sprint(want) {
			t.Fatalf("run id %q, want %d", r.RunID, want)
		}
	}
	if ids, err := b.ListRuns(bg, "F"); err != nil || strings.Join(ids, ",") != "3,2,1" {
		t.Fatalf("ListRuns = %v, %v; want 3,2,1", ids, err)
	}
	if ids, err := b.ListRuns(bg, "Other"); err != nil || len(ids) != 0 {
		t.Fatalf("ListRuns of a flow without runs = %v, %v", ids, err)
	}
	r, err := b.GetRun(bg, "F", "2")
	if err != nil || r.User != "u" || r.RunID != "2" {
		t.Fatalf("GetRun = %+v, %v", r, err)
	}
	r.Status = StatusCompleted
	if err := b.PutRun(bg, r); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.GetRun(bg, "F", "2"); r.Status != StatusCompleted {
		t.Fatalf("status seen by the other machine: %s", r.Status)
	}
	if _, err := a.GetRun(bg, "F", "9"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("GetRun of a missing run: %v; want fs.ErrNotExist", err)
	}

	for _, id := range []string{"10", "2", "1"} {
		if err := a.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: "start", TaskID: id, Status: StatusRunning}); err != nil {
			t.Fatal(err)
		}
	}
	a.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: "end", TaskID: "11", Status: StatusRunning})
	if ids, err := b.ListTasks(bg, "F", "1", "start"); err != nil || strings.Join(ids, ",") != "1,2,10" {
		t.Fatalf("ListTasks = %v, %v; want numeric order 1,2,10", ids, err)
	}
	if steps, err := b.ListSteps(bg, "F", "1"); err != nil || strings.Join(steps, ",") != "end,start" {
		t.Fatalf("ListSteps = %v, %v", steps, err)
	}
	if _, err := b.GetTask(bg, "F", "1", "start", "3"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("GetTask of a missing task: %v", err)
	}
	if arts, err := b.GetArtifacts(bg, "F", "1", "start", "1"); err != nil || len(arts) != 0 {
		t.Fatalf("artifacts before any: %v, %v", arts, err)
	}
}

func TestS3BlobsAreUploadedOnceAndFetchedWhole(t *testing.T) {
	a, b := machines(t)
	content := make([]byte, 9<<20+7) // two parts: multipart
	rand.Read(content)
	art, err := a.PutFile(bg, "F", stageFile(t, a, content))
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.PutFile(bg, "F", stageFile(t, a, content))
	if err != nil || again != art {
		t.Fatalf("second put of the same content = %+v, %v; want %+v", again, err, art)
	}
	if f, err := a.LocalFile(bg, "F", art.SHA); err != nil || f.Path != a.cache.path(Blob("F", art.SHA)) {
		t.Fatalf("LocalFile on the machine that made it = %+v, %v", f, err)
	}
	if _, err := os.Stat(b.cache.path(Blob("F", art.SHA))); err == nil {
		t.Fatal("the other machine's cache has the blob before fetching it")
	}
	f, err := b.LocalFile(bg, "F", art.SHA)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Path)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("fetched blob differs (%d bytes, %v)", len(got), err)
	}
	if err := a.PutTask(bg, &Task{Flow: "F", RunID: "1", Step: "start", TaskID: "1", Status: StatusCompleted, Artifacts: map[string]Artifact{"x": art}}); err != nil {
		t.Fatal(err)
	}
	if arts, err := b.GetArtifacts(bg, "F", "1", "start", "1"); err != nil || arts["x"] != art {
		t.Fatalf("GetArtifacts = %v, %v", arts, err)
	}
	missing := strings.Repeat("ab", 32)
	if _, err := b.LocalFile(bg, "F", missing); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("LocalFile of a missing blob: %v; want fs.ErrNotExist and errs.ErrNotFound", err)
	}
	if _, err := os.Stat(b.cache.path(Blob("F", missing))); err == nil {
		t.Fatal("a failed fetch left a file in the cache")
	}
}

func TestS3LogsWhileRunningAndAfter(t *testing.T) {
	a, b := machines(t)
	out := a.LogFile("F", "1", "start", "1", 0, "stdout")
	os.MkdirAll(filepath.Dir(out), 0o755)
	os.WriteFile(out, []byte("line 1\n"), 0o644)
	// Running: the machine running it reads its cache; the store has nothing yet.
	if got, err := a.ReadLog(bg, "F", "1", "start", "1", 0, "stdout"); err != nil || string(got) != "line 1\n" {
		t.Fatalf("log while running = %q, %v", got, err)
	}
	if got, err := b.ReadLog(bg, "F", "1", "start", "1", 0, "stdout"); err != nil || len(got) != 0 {
		t.Fatalf("other machine's log while running = %q, %v; want empty", got, err)
	}
	os.WriteFile(out, []byte("line 1\nline 2\n"), 0o644)
	if err := a.SaveLogs(bg, "F", "1", "start", "1", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ReadLog(bg, "F", "1", "start", "1", 0, "stdout"); err != nil || string(got) != "line 1\nline 2\n" {
		t.Fatalf("saved log = %q, %v", got, err)
	}
	if got, err := b.ReadLog(bg, "F", "1", "start", "1", 0, "stderr"); err != nil || len(got) != 0 {
		t.Fatalf("a stream never written = %q, %v; want empty", got, err)
	}
}

func TestOpenSelectsTheDatastore(t *testing.T) {
	t.Setenv("METAFLOW_HOME", t.TempDir()) // no config file
	cases := []struct {
		kind, root string
		want       string // type name, or the error's start
	}{
		{"", "", "*datastore.Local"},
		{"local", "", "*datastore.Local"},
		{"s3", "s3://bucket/p", "*datastore.S3"},
		{"s3", "", "METAFLOW_DEFAULT_DATASTORE is s3 but METAFLOW_DATASTORE_SYSROOT_S3 is not set"},
		{"s3", "bucket/p", "METAFLOW_DATASTORE_SYSROOT_S3:"},
		{"gcs", "", `METAFLOW_DEFAULT_DATASTORE is "gcs": use local or s3`},
	}
	for _, c := range cases {
		t.Run(c.kind+"_"+c.root, func(t *testing.T) {
			t.Setenv("METAFLOW_DEFAULT_DATASTORE", c.kind)
			t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", c.root)
			s, err := Open(t.TempDir())
			got := fmt.Sprintf("%T", s)
			if err != nil {
				got = err.Error()
			}
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("Open = %s, want %s", got, c.want)
			}
		})
	}
}

func TestHasFindsWhatTheStoreHolds(t *testing.T) {
	a, b := machines(t)
	local := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	for name, s := range map[string]Store{"local": local, "s3": b} {
		art, err := s.PutFile(bg, "F", stageFile(t, s, []byte("made by a task")))
		if err != nil {
			t.Fatal(err)
		}
		if size, ok, err := s.Has(bg, "F", art.SHA); err != nil || !ok || size != art.Size {
			t.Errorf("%s: Has = %d, %v, %v; want %d, true", name, size, ok, err, art.Size)
		}
		if _, ok, err := s.Has(bg, "F", strings.Repeat("0", 64)); err != nil || ok {
			t.Errorf("%s: Has of a blob the store does not hold = %v, %v", name, ok, err)
		}
		if _, _, err := s.Has(bg, "F", "../../etc"); !errors.Is(err, errs.ErrInvalid) {
			t.Errorf("%s: Has of a name that is no sha256: %v, want ErrInvalid", name, err)
		}
	}
	// A blob another machine put in S3 is found without coming down.
	art, err := a.PutFile(bg, "F", stageFile(t, a, []byte("remote")))
	if err != nil {
		t.Fatal(err)
	}
	if size, ok, err := b.Has(bg, "F", art.SHA); err != nil || !ok || size != art.Size {
		t.Errorf("Has of another machine's blob = %d, %v, %v", size, ok, err)
	}
	if _, err := os.Stat(b.cache.path(Blob("F", art.SHA))); err == nil {
		t.Error("Has downloaded the blob")
	}
}

// countingTransport counts the HTTP requests the SDK sends.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// BenchmarkS3TaskRecord: what the scheduler writes for one short local task
// with one small artifact in the S3 datastore (the blob and the log at once,
// then the record with the artifact index), against the same in a local
// datastore.
func BenchmarkS3TaskRecord(b *testing.B) {
	if skipS3 != "" {
		b.Skip(skipS3)
	}
	ct := &countingTransport{next: http.DefaultTransport}
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithHTTPClient(&http.Client{Transport: ct}))
	if err != nil {
		b.Fatal(err)
	}
	c := s3io.New(cfg)
	bucket := fmt.Sprintf("mf-bench-%d", bucketSeq.Add(1))
	if err := c.CreateBucket(context.Background(), bucket); err != nil {
		b.Fatal(err)
	}
	s3store, err := NewS3(c, "s3://"+bucket+"/p", filepath.Join(b.TempDir(), "cache"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		store Store
	}{{"local", NewLocal(filepath.Join(b.TempDir(), ".metaflow"))}, {"s3", s3store}} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.store
			ct.n.Store(0)
			for i := 0; i < b.N; i++ {
				id := fmt.Sprint(i + 1)
				// A task shorter than the scheduler's RunningRecordAfter has
				// no running record: its outputs and logs are stored at
				// once, then its one record.
				t := &Task{Flow: "F", RunID: "1", Step: "work", TaskID: id,
					Attempts: []Attempt{{Status: StatusCompleted, PID: 42}}}
				dir, err := s.Staging(bg, "F")
				if err != nil {
					b.Fatal(err)
				}
				staged := filepath.Join(dir, "x"+id)
				os.WriteFile(staged, []byte("artifact "+id), 0o644)
				log := s.LogFile("F", "1", "work", id, 0, "stdout")
				os.MkdirAll(filepath.Dir(log), 0o755)
				os.WriteFile(log, []byte("a line\n"), 0o644)
				logErr := make(chan error, 1)
				go func() { logErr <- s.SaveLogs(bg, "F", "1", "work", id, 0) }()
				art, err := s.PutFile(bg, "F", staged)
				if err != nil {
					b.Fatal(err)
				}
				if err := <-logErr; err != nil {
					b.Fatal(err)
				}
				t.Status, t.Artifacts = StatusCompleted, map[string]Artifact{"x": art}
				if err := s.PutTask(bg, t); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(ct.n.Load())/float64(b.N), "requests/task")
		})
	}
}

// An S3 without a cache (the Batch executor's) serves blobs as streams and
// refuses what needs local files; it reads what the others saved.
func TestS3WithoutCacheServesStreamsOnly(t *testing.T) {
	a, _ := machines(t)
	s, err := NewS3(a.c, a.Location(), "")
	if err != nil {
		t.Fatal(err)
	}
	put, err := s.Put(bg, "F", strings.NewReader("streamed"))
	if err != nil || put.SHA != shaHex([]byte("streamed")) {
		t.Fatalf("Put = %+v, %v", put, err)
	}
	staged := filepath.Join(t.TempDir(), "out.mpk")
	os.WriteFile(staged, []byte("from a file"), 0o644)
	file, err := s.PutFile(bg, "F", staged)
	if err != nil || file.SHA != shaHex([]byte("from a file")) || exists(staged) {
		t.Fatalf("PutFile = %+v, %v (staged file left: %v)", file, err, exists(staged))
	}
	known := []byte("known")
	if _, err := s.PutSHA(bg, "F", shaHex(known), bytes.NewReader(known)); err != nil {
		t.Fatal(err)
	}
	for _, wrong := range [][]byte{[]byte("not known"), make([]byte, 9<<20+1)} {
		_, err := s.PutSHA(bg, "F", shaHex(append(wrong, '!')), bytes.NewReader(wrong))
		wantKind(t, "streamed PutSHA of the wrong content", err, errs.ErrCorrupt, "F")
		if _, ok, err := a.Has(bg, "F", shaHex(append(wrong, '!'))); err != nil || ok {
			t.Errorf("a refused streamed PutSHA stored its blob (%v)", err)
		}
	}
	// A streamed upload stops when its context is cancelled, storing nothing.
	ctx, cancel := context.WithCancel(bg)
	big := shaHex(bytes.Repeat([]byte{0}, 20<<20))
	_, err = s.PutSHA(ctx, "F", big, &cancellingReader{n: 20 << 20, at: 9 << 20, cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("streamed PutSHA cancelled under way: %v; want context.Canceled", err)
	}
	if _, ok, err := a.Has(bg, "F", big); err != nil || ok {
		t.Errorf("a cancelled streamed PutSHA stored its blob (%v)", err)
	}
	for content, sha := range map[string]string{"streamed": put.SHA, "from a file": file.SHA, "known": shaHex(known)} {
		if got, err := readAll(a, "F", sha); err != nil || string(got) != content {
			t.Errorf("the cached store reads %q, %v; want %q", got, err, content)
		}
		if got, err := readAll(s, "F", sha); err != nil || string(got) != content {
			t.Errorf("Open = %q, %v; want %q", got, err, content)
		}
	}
	_, err = s.LocalFile(bg, "F", put.SHA)
	wantKind(t, "LocalFile without a cache", err, errs.ErrPrecondition, "no local cache")
	_, err = s.Staging(bg, "F")
	wantKind(t, "Staging without a cache", err, errs.ErrPrecondition, "no local cache")
	if err := a.PutCode(bg, "F", "1", []byte("code")); err != nil {
		t.Fatal(err)
	}
	_, err = s.CodeFile(bg, "F", "1")
	wantKind(t, "CodeFile without a cache", err, errs.ErrPrecondition, "no local cache")
	if p := s.LogFile("F", "1", "start", "1", 0, Stdout); p != "" {
		t.Errorf("LogFile without a cache = %q", p)
	}
	writeFile(t, a.LogFile("F", "1", "start", "1", 0, Stdout), []byte("saved\n"))
	if err := a.SaveLogs(bg, "F", "1", "start", "1", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLogs(bg, "F", "1", "start", "1", 0); err != nil {
		t.Errorf("SaveLogs without a cache: %v; want nothing to do", err)
	}
	if b, err := s.ReadLog(bg, "F", "1", "start", "1", 0, Stdout); err != nil || string(b) != "saved\n" {
		t.Errorf("ReadLog = %q, %v", b, err)
	}
	if _, ok := LocalCopy(s, "F", put.SHA); ok {
		t.Error("LocalCopy without a cache found a file")
	}
	if f, ok := LocalCopy(a, "F", put.SHA); ok || f.Path != "" && exists(f.Path) {
		t.Errorf("LocalCopy of a blob the machine never fetched = %+v, %v", f, ok)
	}
	if _, err := a.LocalFile(bg, "F", put.SHA); err != nil {
		t.Fatal(err)
	}
	if f, ok := LocalCopy(a, "F", put.SHA); !ok || f.Stamp.IsZero() || !bytes.Equal(mustRead(t, f.Path), []byte("streamed")) {
		t.Errorf("LocalCopy of a fetched blob = %+v, %v; want its file, stamped", f, ok)
	}
}
