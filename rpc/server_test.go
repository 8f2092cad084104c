package rpc

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// okExec completes every task at once; a step named "slow" waits for cancel.
type okExec struct{}

func (okExec) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	l.Started(42)
	l.Line(false, "hi from "+l.Spec.Step)
	if l.Spec.Step == "slow" {
		<-ctx.Done()
		return -1, nil
	}
	if l.Spec.Step == "boom" { // fails as an R error does
		return 3, os.WriteFile(filepath.Join(l.Spec.OutputDir, "_error.txt"), []byte("Error in boom: kaboom\n"), 0o644)
	}
	res, _ := msgpack.Marshal(map[string]any{"artifacts": []string{}, "foreach_count": -1})
	return 0, os.WriteFile(filepath.Join(l.Spec.OutputDir, "_result.mpk"), res, 0o644)
}

func serve(t *testing.T, token string) pb.EngineClient {
	t.Helper()
	return serveExec(t, token, okExec{})
}

// serveExec serves an engine whose tasks run with exec.
func serveExec(t *testing.T, token string, exec scheduler.Executor) pb.EngineClient {
	t.Helper()
	dir, err := os.MkdirTemp("", "rpc")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "e.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(sock); st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", st.Mode().Perm())
	}
	gs := NewGRPCServer(NewServer(exec), token)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewEngineClient(conn)
}

func request(t *testing.T, middle string) *pb.RunRequest {
	steps := []*pb.Step{{Name: "start", Next: []string{middle}}, {Name: middle, Next: []string{"end"}}, {Name: "end"}}
	return &pb.RunRequest{
		Flow:    &pb.Flow{Name: "RPCFlow", Steps: steps},
		Options: &pb.RunOptions{MaxWorkers: 2, MaxNumSplits: 10, DatastoreRoot: filepath.Join(t.TempDir(), ".metaflow")},
	}
}

func TestStartRunStreamsConsoleAndResult(t *testing.T) {
	c := serve(t, "")
	stream, err := c.StartRun(context.Background(), request(t, "work"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var started, finished *pb.RunEvent
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind {
		case pb.RunEvent_RUN_STARTED:
			started = ev
		case pb.RunEvent_RUN_FINISHED:
			finished = ev
		default:
			lines = append(lines, ev.Line)
		}
	}
	if started == nil || started.RunId != "1" || finished == nil || !finished.Success {
		t.Fatalf("started %v finished %v", started, finished)
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{"[1/work/2 (pid 42)] hi from work", "Task finished successfully.", "Done!"} {
		if !strings.Contains(text, want) {
			t.Fatalf("console lacks %q:\n%s", want, text)
		}
	}
}

func TestBadFlowIsInvalidArgumentAndWritesNothing(t *testing.T) {
	c := serve(t, "")
	req := request(t, "work")
	req.Flow.Steps[0].Next = []string{"nope"}
	_, err := c.Validate(context.Background(), req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Validate: %v", err)
	}
	stream, _ := c.StartRun(context.Background(), req)
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("StartRun: %v", err)
	}
	if _, err := os.Stat(req.Options.DatastoreRoot); !os.IsNotExist(err) {
		t.Fatal("datastore written for an invalid flow")
	}
}

func TestCancelRunKillsAndReports(t *testing.T) {
	c := serve(t, "")
	req := request(t, "slow")
	stream, err := c.StartRun(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var runID string
	for runID == "" {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		runID = ev.RunId
	}
	// Wait until the slow task is running, then cancel.
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ev.Line, "hi from slow") {
			break
		}
	}
	resp, err := c.CancelRun(context.Background(), &pb.CancelRunRequest{RunId: runID, Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil || resp.KilledTasks != 1 {
		t.Fatalf("CancelRun: %v %v", resp, err)
	}
	run, err := c.GetRun(context.Background(), &pb.GetRunRequest{RunId: runID, Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil || run.Status != "failed" {
		t.Fatalf("run after cancel: %v %v", run, err)
	}
	if _, err := c.Logs(context.Background(), &pb.LogsRequest{Pathspec: "99/end", Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot}); status.Code(err) != codes.NotFound {
		t.Fatalf("logs of an unknown run: %v", err)
	}
}

func TestTokenRequired(t *testing.T) {
	c := serve(t, "0123456789abcdef0123")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.ListRuns(ctx, &pb.ListRunsRequest{Flow: "F", DatastoreRoot: "/tmp"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	stream, _ := c.StartRun(ctx, request(t, "work"))
	if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stream without token: %v", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer 0123456789abcdef0123")
	if _, err := c.ListRuns(authed, &pb.ListRunsRequest{Flow: "F", DatastoreRoot: "/tmp"}); err != nil {
		t.Fatalf("with token: %v", err)
	}
}
