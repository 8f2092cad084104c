package rpc

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/batch"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

func serveServer(t *testing.T, srv *Server) pb.EngineClient {
	t.Helper()
	dir, err := os.MkdirTemp("", "rpc")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := ListenUnix(filepath.Join(dir, "e.sock"))
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(srv, "")
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "e.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewEngineClient(conn)
}

// batchExec marks the lines of the tasks it runs.
type batchExec struct{}

func (batchExec) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	l.Line(false, "on batch: "+l.Spec.Step)
	return okExec{}.Run(ctx, l)
}

// flakyPlugin is the batch decorator's plugin, not configured the first
// time it is asked.
type flakyPlugin struct{ calls int }

func (p *flakyPlugin) Name() string { return "AWS Batch" }

func (p *flakyPlugin) NewExecutor() (scheduler.Executor, error) {
	p.calls++
	if p.calls == 1 {
		return nil, errors.New("AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE")
	}
	return batchExec{}, nil
}

func TestBatchStepsNeedAConfiguredBatchExecutor(t *testing.T) {
	srv := NewServer(okExec{})
	if err := srv.Executors.Register(batch.Decorator, &flakyPlugin{}); err != nil {
		t.Fatal(err)
	}
	c := serveServer(t, srv)
	req := request(t, "work")
	req.Flow.Steps[1].Decorators = []*pb.Decorator{{Name: "batch", Args: []*pb.Arg{{Key: "cpu", Value: "2"}}}}
	// show (Validate) works without Batch.
	if _, err := c.Validate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	stream, _ := c.StartRun(context.Background(), req)
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "METAFLOW_BATCH_JOB_QUEUE") {
		t.Fatalf("StartRun without Batch: %v", err)
	}
	if _, err := os.Stat(req.Options.DatastoreRoot); !os.IsNotExist(err) {
		t.Fatal("datastore written although Batch is not configured")
	}
	// Configured: work goes to Batch, the other steps stay local.
	stream, _ = c.StartRun(context.Background(), req)
	var text []string
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, ev.Line)
	}
	all := strings.Join(text, "\n")
	if !strings.Contains(all, "on batch: work") || strings.Contains(all, "on batch: start") || strings.Contains(all, "on batch: end") {
		t.Fatalf("console:\n%s", all)
	}
}

// An engine without the batch executor refuses batch steps before anything
// is written; so does one whose settings lack the queue (the real plugin).
func TestBatchStepsWithoutTheExecutor(t *testing.T) {
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "")
	withPlugin := NewServer(okExec{})
	if err := withPlugin.Executors.Register(batch.Decorator, batch.NewPlugin()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		srv  *Server
		want string
	}{
		{"no batch executor", NewServer(okExec{}), `decorator "batch" chooses an executor that this engine does not have`},
		{"not configured", withPlugin, "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE (the job queue) and METAFLOW_DATASTORE_SYSROOT_S3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serveServer(t, tc.srv)
			req := request(t, "work")
			req.Options.With = []*pb.Decorator{{Name: "batch"}}
			stream, _ := c.StartRun(context.Background(), req)
			if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartRun: %v, want FailedPrecondition %q", err, tc.want)
			}
			if _, err := os.Stat(req.Options.DatastoreRoot); !os.IsNotExist(err) {
				t.Fatal("datastore written")
			}
		})
	}
}
