//go:build linux

package s3io

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/internal/mototest"
)

var skip string // why the tests needing moto_server skip, if they do

func TestMain(m *testing.M) { os.Exit(mototest.Main(m, &skip)) }

// testS3 is a Client on the emulator with a fresh bucket.
func testS3(t *testing.T) (*Client, string, context.Context) {
	t.Helper()
	if skip != "" {
		t.Skip(skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg)
	bucket := fmt.Sprintf("mf-s3-%s", strings.ToLower(t.Name()))
	if err := s.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	return s, bucket, ctx
}

func TestEmuS3SmallObjects(t *testing.T) {
	s, bucket, ctx := testS3(t)
	if ok, err := s.Exists(ctx, bucket, "a/b.json"); err != nil || ok {
		t.Fatalf("Exists before PUT = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.GetBytes(ctx, bucket, "a/b.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetBytes of a missing object: %v; want ErrNotFound", err)
	}
	if err := s.GetFile(ctx, bucket, "a/b.json", filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetFile of a missing object: %v; want ErrNotFound", err)
	}
	want := []byte(`{"exit": 0}`)
	if err := s.PutBytes(ctx, bucket, "a/b.json", want); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(ctx, bucket, "a/b.json"); err != nil || !ok {
		t.Fatalf("Exists after PUT = %v, %v; want true, nil", ok, err)
	}
	got, err := s.GetBytes(ctx, bucket, "a/b.json")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("GetBytes = %q, %v; want %q", got, err, want)
	}
	// An empty file and a key needing escapes.
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFile(ctx, bucket, "odd key/ü+x=1.log", empty); err != nil {
		t.Fatal(err)
	}
	if err := s.GetFile(ctx, bucket, "odd key/ü+x=1.log", filepath.Join(dir, "sub", "got")); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "sub", "got")); err != nil || st.Size() != 0 {
		t.Fatalf("downloaded empty file: %v, %v", st, err)
	}
	// A presigned URL works without credentials.
	u, err := s.PresignGet(ctx, bucket, "a/b.json", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := strings.TrimRight(os.Getenv("AWS_ENDPOINT_URL"), "/") // set by TestMain
	if !strings.HasPrefix(u, endpoint+"/"+bucket+"/a/b.json?") {
		t.Errorf("presigned URL %s is not path-style on %s", u, endpoint)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET presigned URL: %s %q", resp.Status, body)
	}
}

// TestEmuS3LargeFile sends a file of several parts through the multipart
// upload and the ranged, parallel download, and checks every byte.
func TestEmuS3LargeFile(t *testing.T) {
	s, bucket, ctx := testS3(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	want := make([]byte, 17<<20+12345) // > 16 MiB: 3 parts of PartSize
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	sha, err := FileSHA(src)
	if err != nil {
		t.Fatal(err)
	}
	key := "data/" + sha
	if err := s.PutFile(ctx, bucket, key, src); err != nil {
		t.Fatal(err)
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt64(head.ContentLength) != int64(len(want)) {
		t.Errorf("object size %d, want %d", aws.ToInt64(head.ContentLength), len(want))
	}
	// A multipart object's ETag is "md5-of-part-md5s-N".
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(strings.Trim(etag, `"`), "-3") {
		t.Errorf("ETag %s: not a 3-part multipart upload", etag)
	}
	dst := filepath.Join(dir, "out", "big")
	if err := s.GetFile(ctx, bucket, key, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", len(got), len(want))
	}
	if b, err := s.GetBytes(ctx, bucket, key); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("GetBytes of the large object: %d bytes, %v", len(b), err)
	}
	// No temp files left beside the download.
	if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) != 1 {
		t.Errorf("download dir has %d entries, want 1", len(ents))
	}
}

func TestEmuS3PutIfAbsentAndListDirs(t *testing.T) {
	s, bucket, ctx := testS3(t)
	if ok, err := s.PutIfAbsent(ctx, bucket, "F/1/_run.json", []byte("a")); err != nil || !ok {
		t.Fatalf("first conditional PUT = %v, %v; want true, nil", ok, err)
	}
	if ok, err := s.PutIfAbsent(ctx, bucket, "F/1/_run.json", []byte("b")); err != nil || ok {
		t.Fatalf("second conditional PUT = %v, %v; want false, nil", ok, err)
	}
	// The same bytes again: a retried PUT whose first answer was lost.
	if ok, err := s.PutIfAbsent(ctx, bucket, "F/1/_run.json", []byte("a")); err != nil || !ok {
		t.Fatalf("conditional PUT of the very same bytes = %v, %v; want true, nil", ok, err)
	}
	if b, err := s.GetBytes(ctx, bucket, "F/1/_run.json"); err != nil || string(b) != "a" {
		t.Fatalf("object after a refused conditional PUT = %q, %v; want the first body", b, err)
	}
	for _, k := range []string{"F/2/start/1/_task.json", "F/10/x", "F/data/ab/abc", "G/3/x", "F/2/end/1/_task.json"} {
		if err := s.PutBytes(ctx, bucket, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListDirs(ctx, bucket, "F")
	if err != nil {
		t.Fatal(err)
	}
	if want := "1,10,2,data"; strings.Join(got, ",") != want {
		t.Errorf("ListDirs(F) = %v, want %s", got, want)
	}
	if got, _ := s.ListDirs(ctx, bucket, "F/2"); strings.Join(got, ",") != "end,start" {
		t.Errorf("ListDirs(F/2) = %v, want end,start", got)
	}
	if _, err := s.ListDirs(ctx, "no-such-bucket", "F"); !errors.Is(err, ErrNoBucket) {
		t.Errorf("ListDirs in a missing bucket: %v; want ErrNoBucket", err)
	}
	if _, err := s.GetBytes(ctx, "no-such-bucket", "F"); !errors.Is(err, ErrNoBucket) {
		t.Errorf("GetBytes in a missing bucket: %v; want ErrNoBucket", err)
	}
	if got, err := s.ListDirs(ctx, bucket, "nothing"); err != nil || len(got) != 0 {
		t.Errorf("ListDirs of an empty prefix = %v, %v; want none", got, err)
	}
}

// Ranged reads of a growing object, as the executor follows a log.
func TestEmuS3GetFrom(t *testing.T) {
	s, bucket, ctx := testS3(t)
	if _, err := s.GetFrom(ctx, bucket, "log", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing object: %v", err)
	}
	if err := s.PutBytes(ctx, bucket, "log", nil); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetFrom(ctx, bucket, "log", 0); err != nil || len(b) != 0 {
		t.Errorf("empty object: %q, %v", b, err)
	}
	if err := s.PutBytes(ctx, bucket, "log", []byte("one\ntwo\n")); err != nil {
		t.Fatal(err)
	}
	for off, want := range map[int64]string{0: "one\ntwo\n", 4: "two\n", 7: "\n"} {
		if b, err := s.GetFrom(ctx, bucket, "log", off); err != nil || string(b) != want {
			t.Errorf("from %d: %q, %v; want %q", off, b, err, want)
		}
	}
	for _, off := range []int64{8, 100} {
		if _, err := s.GetFrom(ctx, bucket, "log", off); !errors.Is(err, ErrNoNewBytes) {
			t.Errorf("from %d (the end or past it): %v, want ErrNoNewBytes", off, err)
		}
	}
}

// failAfter gives n bytes of x, then fails with err.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// Streams up and down: a failing stream stores nothing (single PUT or
// multipart), its error keeps its kind; listings list every key below a
// prefix.
func TestEmuS3Streams(t *testing.T) {
	s, bucket, ctx := testS3(t)
	want := bytes.Repeat([]byte("0123456789"), (PartSize+PartSize/2)/10)
	if err := s.PutReader(ctx, bucket, "d/big", bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	body, size, err := s.GetReader(ctx, bucket, "d/big")
	if err != nil || size != int64(len(want)) {
		t.Fatalf("GetReader = %d, %v", size, err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("streamed %d bytes back, %v; want %d", len(got), err, len(want))
	}
	if _, _, err := s.GetReader(ctx, bucket, "d/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetReader of a missing object: %v", err)
	}
	corrupt := errs.Corrupt("content does not match")
	for _, n := range []int{10, PartSize + 10} {
		key := fmt.Sprintf("d/failed-%d", n)
		err := s.PutReader(ctx, bucket, key, &failAfter{n: n, err: corrupt})
		if !errors.Is(err, errs.ErrCorrupt) || errs.Kind(err) != errs.ErrCorrupt {
			t.Errorf("PutReader of a stream failing after %d bytes: %v; want its error, of its kind", n, err)
		}
		if ok, err := s.Exists(ctx, bucket, key); err != nil || ok {
			t.Errorf("a failed stream of %d bytes stored an object (%v)", n, err)
		}
	}
	for _, k := range []string{"d/sub/a", "d/sub/b/c", "e/x"} {
		if err := s.PutBytes(ctx, bucket, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if keys, err := s.ListKeys(ctx, bucket, "d"); err != nil || strings.Join(keys, ",") != "big,sub/a,sub/b/c" {
		t.Errorf("ListKeys(d) = %v, %v", keys, err)
	}
	if keys, err := s.ListKeys(ctx, bucket, "nothing"); err != nil || len(keys) != 0 {
		t.Errorf("ListKeys of an empty prefix = %v, %v", keys, err)
	}
}
