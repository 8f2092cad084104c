//go:build linux

package batch

import (
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// TestEmuAttemptLogs: a Batch attempt's logs are the copies its task runner
// uploads as they grow, else its CloudWatch stream; an attempt with neither
// (or that was no Batch job) has none to give, and the datastore's files are
// all there is.
func TestEmuAttemptLogs(t *testing.T) {
	f := newFixture(t, false)
	s3c, err := s3io.FromEnv(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	bucket := f.name("logs")
	if err := s3c.CreateBucket(f.ctx, bucket); err != nil {
		t.Fatal(err)
	}
	live := "s3://" + bucket + "/p/F/1/start/1/0-abc"
	for k, v := range map[string]string{"p/F/1/start/1/0-abc/stdout.log": "live out\n", "p/F/1/start/1/0-abc/stderr.log": "live err\n",
		"p/F/1/start/4/0-x/stdout.log": "only out\n"} {
		if err := s3c.PutBytes(f.ctx, bucket, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	fake := &fakeJobs{logs: map[string][]string{"job-2": {"cw 1", "cw 2"}}}
	r := fakePlugin(fake).AttemptLogs(f.ctx)
	for _, tc := range []struct {
		name           string
		at             datastore.Attempt
		stdout, stderr string
		ok             bool
	}{
		{"uploaded logs", datastore.Attempt{JobID: "job-1", LogsURL: live}, "live out\n", "live err\n", true},
		{"only stdout uploaded", datastore.Attempt{JobID: "job-4", LogsURL: "s3://" + bucket + "/p/F/1/start/4/0-x"}, "only out\n", "", true},
		{"nothing uploaded: CloudWatch", datastore.Attempt{JobID: "job-2", LogsURL: "s3://" + bucket + "/p/F/1/start/2/0-x"}, "cw 1\ncw 2\n", "", true},
		{"neither", datastore.Attempt{JobID: "job-3"}, "", "", false},
		{"no Batch job", datastore.Attempt{PID: 7}, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errb, ok := r.Read(f.ctx, tc.at)
			if ok != tc.ok || string(out) != tc.stdout || string(errb) != tc.stderr {
				t.Errorf("Read = %q, %q, %v; want %q, %q, %v", out, errb, ok, tc.stdout, tc.stderr, tc.ok)
			}
		})
	}
}
