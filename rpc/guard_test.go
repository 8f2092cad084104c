package rpc

import (
	"context"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

func TestNamesThatLeaveTheDatastoreAreRefused(t *testing.T) {
	c := serve(t, "")
	root := t.TempDir() + "/.metaflow"
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"flow", func() error {
			_, err := c.ListRuns(ctx, &pb.ListRunsRequest{DatastoreRoot: root, Flow: "../outside"})
			return err
		}, `invalid flow name "../outside"`},
		{"run", func() error {
			_, err := c.GetRun(ctx, &pb.GetRunRequest{DatastoreRoot: root, Flow: "F", RunId: "../../etc"})
			return err
		}, `invalid run id "../../etc"`},
		{"step", func() error {
			_, err := c.GetTask(ctx, &pb.GetTaskRequest{DatastoreRoot: root, Flow: "F", RunId: "1", Step: "..", TaskId: "1"})
			return err
		}, `invalid step name ".."`},
		{"task", func() error {
			_, err := c.GetTask(ctx, &pb.GetTaskRequest{DatastoreRoot: root, Flow: "F", RunId: "1", Step: "s", TaskId: "1/../../x"})
			return err
		}, `invalid task id`},
		{"artifact", func() error {
			_, err := c.GetTask(ctx, &pb.GetTaskRequest{DatastoreRoot: root, Flow: "F", RunId: "1", Step: "s", TaskId: "1", Artifact: "a\x00b"})
			return err
		}, `invalid artifact name`},
		{"pathspec", func() error {
			_, err := c.Logs(ctx, &pb.LogsRequest{DatastoreRoot: root, Flow: "F", Pathspec: "1/../../x"})
			return err
		}, `invalid pathspec "1/../../x"`},
		{"streamed artifact", func() error {
			s, err := c.ReadArtifact(ctx, &pb.ReadArtifactRequest{DatastoreRoot: root, Flow: "F", RunId: "1", Step: "s", TaskId: "1", Name: "../../../../etc/passwd"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, `invalid artifact name "../../../../etc/passwd"`},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want InvalidArgument with %q", err, tc.want)
			}
		})
	}
	// Good names pass the check (and are then not found).
	_, err := c.GetRun(ctx, &pb.GetRunRequest{DatastoreRoot: root, Flow: "F", RunId: "1"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("a well-formed request: %v", err)
	}
}

func TestPanicsBecomeErrors(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/metaflow.v1.Engine/GetRun"}
	_, err := guardUnary(context.Background(), &pb.GetRunRequest{}, info, func(ctx context.Context, req any) (any, error) {
		var m map[string]int
		m["x"] = 1 // a nil map: panics
		return nil, nil
	})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "internal error in /metaflow.v1.Engine/GetRun") {
		t.Fatalf("a panicking handler gave %v", err)
	}
	serr := guardStream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/m/S"}, func(srv any, ss grpc.ServerStream) error {
		panic(io.ErrUnexpectedEOF)
	})
	if status.Code(serr) != codes.Internal {
		t.Fatalf("a panicking stream gave %v", serr)
	}
}
