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

func TestBatchStepsNeedAConfiguredBatchExecutor(t *testing.T) {
	srv := NewServer(okExec{})
	calls := 0
	srv.NewBatch = func() (scheduler.Executor, error) {
		calls++
		if calls == 1 {
			return nil, errors.New("AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE")
		}
		return batchExec{}, nil
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
