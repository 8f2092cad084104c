//go:build linux

package datastore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/metaflow-r/metaflow/internal/s3io"
)

// rootS3 returns an S3 datastore at the top of a fresh bucket (no prefix)
// and the client, to put objects that are not runs.
func rootS3(t *testing.T) (*S3, *s3io.Client, string) {
	t.Helper()
	if skipS3 != "" {
		t.Skip(skipS3)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := s3io.New(cfg)
	bucket := fmt.Sprintf("mf-root-%d", bucketSeq.Add(1))
	if err := c.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	s, err := NewS3(c, "s3://"+bucket, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return s, c, bucket
}

// fillFlows makes, through the store and beside it (junk), flows with
// runs and folders that are no flows; it returns the flows ListFlows must
// give.
func fillFlows(t *testing.T, s Store, junk func(rel string)) []string {
	t.Helper()
	for _, flow := range []string{"Zeta", "AlphaFlow", "AlphaFlow", "mixed_Case9"} {
		if err := s.NewRun(bg, &Run{Flow: flow, Status: StatusRunning}); err != nil {
			t.Fatal(err)
		}
	}
	// A run recorded under a name no flow can have.
	if err := s.PutRun(bg, &Run{Flow: "bad-name", RunID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRun(bg, &Run{Flow: "_s3cache", RunID: "1"}); err != nil {
		t.Fatal(err)
	}
	// A flow whose newest numeric folder has no _run.json still counts
	// (an older run has one).
	if err := s.NewRun(bg, &Run{Flow: "Older", Status: StatusRunning}); err != nil {
		t.Fatal(err)
	}
	junk("Older/7/start/1/_task.json")
	// Folders without a run: blobs only, a Batch transport folder, a
	// staging folder, files at the top level.
	junk("BlobsOnly/data/ab/" + strings.Repeat("ab", 32))
	junk("Transport/3/start/1/0-abcd/_spec.mpk")
	junk("Staged/_staging/x")
	junk("TopFile")
	junk("_engine/sha/metaflow-engine")
	return []string{"AlphaFlow", "Older", "Zeta", "mixed_Case9"}
}

func TestListFlows(t *testing.T) {
	check := func(t *testing.T, s Store, want []string) {
		t.Helper()
		got, err := s.ListFlows(bg)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("ListFlows = %q, want %q", got, want)
		}
	}
	t.Run("local", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), ".metaflow")
		s := NewLocal(root)
		check(t, s, []string{}) // no folder yet
		want := fillFlows(t, s, func(rel string) {
			p := filepath.Join(root, filepath.FromSlash(rel))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		os.MkdirAll(filepath.Join(root, "Empty"), 0o755)
		os.MkdirAll(filepath.Join(root, "_s3cache", "bucket", "prefix", "Cached", "1"), 0o755)
		check(t, s, want)
		if err := os.Remove(filepath.Join(root, "Zeta", "1", "_run.json")); err != nil {
			t.Fatal(err)
		}
		check(t, s, []string{"AlphaFlow", "Older", "mixed_Case9"})
	})
	for _, kind := range []string{"s3-prefix", "s3-root"} {
		t.Run(kind, func(t *testing.T) {
			var s *S3
			var c *s3io.Client
			var bucket, prefix string
			if kind == "s3-root" {
				s, c, bucket = rootS3(t)
			} else {
				s, _ = machines(t)
				c, bucket, prefix = s.c, s.bucket, s.prefix+"/"
			}
			check(t, s, []string{})
			want := fillFlows(t, s, func(rel string) {
				if err := c.PutBytes(context.Background(), bucket, prefix+rel, []byte("x")); err != nil {
					t.Fatal(err)
				}
			})
			// Objects beside the datastore's prefix are not its flows.
			if prefix != "" {
				c.PutBytes(context.Background(), bucket, "Outside/1/_run.json", []byte("{}"))
			}
			check(t, s, want)
		})
	}
}
