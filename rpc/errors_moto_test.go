//go:build linux

package rpc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/internal/mototest"
	"github.com/metaflow-r/metaflow/internal/s3io"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// StartRun's refusals have the code of their cause: an S3 datastore without
// its bucket is FailedPrecondition, one that cannot be reached Unavailable,
// a bad request InvalidArgument, a missing origin run NotFound; none writes
// anything.
func TestStartRunErrorCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not starting moto_server")
	}
	path, err := exec.LookPath("moto_server")
	if err != nil {
		t.Skip("moto_server is not installed (pip install 'moto[server]')")
	}
	url, stopMoto, err := mototest.Start(path, filepath.Join(t.TempDir(), "moto.log"))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(stopMoto) }
	defer stop()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
		"AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1",
	} {
		t.Setenv(k, v)
	}
	// The S3 datastore's client is made once per process: make it here.
	old := s3io.Default
	s3io.Default = sync.OnceValues(func() (*s3io.Client, error) { return s3io.FromEnv(context.Background()) })
	defer func() { s3io.Default = old }()

	c := serve(t, "")
	for _, tc := range []struct {
		name string
		s3   bool // METAFLOW_DEFAULT_DATASTORE=s3
		edit func(*pb.RunRequest)
		code codes.Code
		msg  string
	}{
		{"bad option", false, func(r *pb.RunRequest) { r.Options.MaxWorkers = 0 }, codes.InvalidArgument, "--max-workers must be at least 1"},
		{"no origin run", false, func(r *pb.RunRequest) { r.Options.Resume, r.Options.OriginRunId = true, "7" }, codes.NotFound, "cannot resume: run 7 of flow RPCFlow does not exist"},
		{"no bucket", true, nil, codes.FailedPrecondition, "has no bucket nobucket"},
		{"S3 down", true, func(*pb.RunRequest) { stop() }, codes.Unavailable, "S3 LIST s3://nobucket/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.s3 {
				t.Setenv("METAFLOW_DEFAULT_DATASTORE", "s3")
				t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://nobucket/metaflow")
			}
			req := request(t, "work")
			if tc.edit != nil {
				tc.edit(req)
			}
			stream, err := c.StartRun(context.Background(), req)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("StartRun: %v, want %v %q", err, tc.code, tc.msg)
			}
			if _, err := os.Stat(filepath.Join(req.Options.DatastoreRoot, "RPCFlow")); !os.IsNotExist(err) {
				t.Fatal("a run was written")
			}
		})
	}
}
