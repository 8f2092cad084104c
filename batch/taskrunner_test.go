//go:build linux

package batch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// The task runner hashes its outputs while the task writes them (a
// Prehasher on the staging folder, as a local task's are): what it stores
// in S3 is still each file's content under its sha, also when a file was
// hashed in part and then grew, shrank or was replaced.
func TestPutOutputsPrehashed(t *testing.T) {
	f := newFixture(t, false)
	first := datastore.PrehashFirstLook
	datastore.PrehashFirstLook = 10 * time.Millisecond
	t.Cleanup(func() { datastore.PrehashFirstLook = first })
	s3c := s3io.New(f.cfg)
	bucket := strings.ToLower(f.name("mf-prehash"))
	createBucket(t, s3c, bucket)
	blobs, err := datastore.NewS3(s3c, "s3://"+bucket+"/mf", filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	fill := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	cases := []struct {
		name        string
		before      []byte // written, then hashed in part while watched
		after       []byte // then appended, or the whole content (rewrite, replace)
		rewrite     bool   // truncated and written again (it shrinks)
		replace     bool   // another file renamed over it
		wantContent []byte
	}{
		{name: "grew after a partial hash", before: fill('a', 3*mib), after: fill('b', 2*mib),
			wantContent: append(fill('a', 3*mib), fill('b', 2*mib)...)},
		{name: "shrank after it was hashed", before: fill('a', 3*mib), after: fill('c', mib), rewrite: true,
			wantContent: fill('c', mib)},
		{name: "replaced after it was hashed", before: fill('a', 3*mib), after: fill('d', 3*mib), replace: true,
			wantContent: fill('d', 3*mib)},
		{name: "written after the task's end only", after: []byte("small"), wantContent: []byte("small")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			out := stagedOutputs(t, blobs)
			pre := datastore.WatchStaging(out)
			defer pre.Close()
			x := filepath.Join(out, "x.mpk")
			if tc.before != nil {
				writeFile(t, x, tc.before, os.O_CREATE|os.O_WRONLY)
				time.Sleep(300 * time.Millisecond) // the Prehasher's first looks
			}
			switch {
			case tc.rewrite:
				writeFile(t, x, tc.after, os.O_WRONLY|os.O_TRUNC)
			case tc.replace:
				writeFile(t, x+".new", tc.after, os.O_CREATE|os.O_WRONLY)
				if err := os.Rename(x+".new", x); err != nil {
					t.Fatal(err)
				}
			default:
				writeFile(t, x, tc.after, os.O_CREATE|os.O_WRONLY|os.O_APPEND)
			}
			writeFile(t, filepath.Join(out, "_result.mpk"), []byte("result"), os.O_CREATE|os.O_WRONLY)
			outputs, err := putOutputs(ctx, blobs, pre, "F", out)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tc.wantContent)
			want := hex.EncodeToString(sum[:])
			if len(outputs) != 1 || outputs["x"] != want {
				t.Fatalf("outputs %v, want x = %s", outputs, want)
			}
			got, err := s3c.GetBytes(ctx, bucket, datastore.Key("mf", datastore.Blob("F", want)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.wantContent) {
				t.Errorf("S3 holds %d bytes under %s, not the artifact's %d", len(got), want, len(tc.wantContent))
			}
		})
	}
}

// writeFile writes b to path opened with flag.
func writeFile(t *testing.T, path string, b []byte, flag int) {
	t.Helper()
	fh, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// stagedOutputs is a fresh task output folder in blobs' staging folder of
// flow F, as the runner gives a task.
func stagedOutputs(t *testing.T, blobs datastore.Blobs) string {
	t.Helper()
	staging, err := blobs.Staging(context.Background(), "F")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.MkdirTemp(staging, "out-")
	if err != nil {
		t.Fatal(err)
	}
	return out
}
