package rpc

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// runToEnd starts req and reads its stream until it ends, returning the
// RUN_FINISHED event.
func runToEnd(t *testing.T, c pb.EngineClient, req *pb.RunRequest) *pb.RunEvent {
	t.Helper()
	stream, err := c.StartRun(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var finished *pb.RunEvent
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return finished
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == pb.RunEvent_RUN_FINISHED {
			finished = ev
		}
	}
}

func TestListFlowsListsFlowsWithRuns(t *testing.T) {
	c := serve(t, "")
	root := filepath.Join(t.TempDir(), ".metaflow")
	resp, err := c.ListFlows(context.Background(), &pb.ListFlowsRequest{DatastoreRoot: root})
	if err != nil || len(resp.Flows) != 0 {
		t.Fatalf("ListFlows of a datastore not yet made = %v, %v", resp, err)
	}
	for _, name := range []string{"ZFlow", "AFlow"} {
		req := request(t, "work")
		req.Flow.Name, req.Options.DatastoreRoot = name, root
		if ev := runToEnd(t, c, req); ev == nil || !ev.Success {
			t.Fatalf("run of %s: %v", name, ev)
		}
	}
	// Not flows: a folder without runs, the S3 cache, a file.
	os.MkdirAll(filepath.Join(root, "NoRuns", "data"), 0o755)
	os.MkdirAll(filepath.Join(root, "_s3cache", "b"), 0o755)
	os.WriteFile(filepath.Join(root, "README"), []byte("x"), 0o644)
	resp, err = c.ListFlows(context.Background(), &pb.ListFlowsRequest{DatastoreRoot: root})
	if err != nil || strings.Join(resp.Flows, ",") != "AFlow,ZFlow" {
		t.Fatalf("ListFlows = %v, %v; want AFlow,ZFlow", resp, err)
	}
	if _, err := c.ListFlows(context.Background(), &pb.ListFlowsRequest{DatastoreRoot: "relative/.metaflow"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ListFlows with a relative root: %v; want InvalidArgument", err)
	}
}

func TestFailedRunAndTaskCarryTheirError(t *testing.T) {
	c := serve(t, "")
	req := request(t, "boom")
	ev := runToEnd(t, c, req)
	if ev == nil || ev.Success {
		t.Fatalf("run with a failing step: %v", ev)
	}
	run, err := c.GetRun(context.Background(), &pb.GetRunRequest{RunId: ev.RunId, Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != "failed" || !strings.Contains(run.Error, "Error in boom: kaboom") {
		t.Fatalf("run status %q, error %q", run.Status, run.Error)
	}
	tasks := map[string]*pb.TaskInfo{}
	for _, st := range run.Steps {
		for _, ti := range st.Tasks {
			tasks[st.Name] = ti
		}
	}
	if ti := tasks["boom"]; ti == nil || ti.Status != "failed" || ti.Error != "Error in boom: kaboom" || ti.ExitCode != 3 {
		t.Fatalf("failed task: %v", ti)
	}
	if ti := tasks["start"]; ti == nil || ti.Status != "completed" || ti.Error != "" || ti.ExitCode != 0 {
		t.Fatalf("completed task: %v", ti)
	}
	ti, err := c.GetTask(context.Background(), &pb.GetTaskRequest{RunId: ev.RunId, Flow: "RPCFlow", Step: "boom", TaskId: tasks["boom"].TaskId, DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil || ti.Error != "Error in boom: kaboom" || ti.ExitCode != 3 {
		t.Fatalf("GetTask of the failed task = %v, %v", ti, err)
	}
	runs, err := c.ListRuns(context.Background(), &pb.ListRunsRequest{Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil || len(runs.Runs) != 1 || runs.Runs[0].Error != run.Error {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
}

func TestCodePackageIsStoredAndReturnedByGetRun(t *testing.T) {
	c := serve(t, "")
	req := request(t, "work")
	req.Flow.Package = []*pb.PackageFile{
		{Path: "flow.R", Content: []byte("metaflow('RPCFlow')\n")},
		{Path: "data/x.csv", Content: []byte("x\n1\n")},
		{Path: "movies.csv", Content: []byte("title\nHeat\n")},
	}
	ev := runToEnd(t, c, req)
	if ev == nil || !ev.Success {
		t.Fatalf("run: %v", ev)
	}
	run, err := c.GetRun(context.Background(), &pb.GetRunRequest{RunId: ev.RunId, Flow: "RPCFlow", DatastoreRoot: req.Options.DatastoreRoot})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cf := range run.CodePackage {
		got = append(got, cf.Path)
		blob := filepath.Join(req.Options.DatastoreRoot, "RPCFlow", "data", cf.Sha[:2], cf.Sha)
		b, err := os.ReadFile(blob)
		if err != nil || int64(len(b)) != cf.Size {
			t.Errorf("%s: blob %s: %d bytes, %v; want %d", cf.Path, blob, len(b), err, cf.Size)
		}
	}
	if strings.Join(got, ",") != "data/x.csv,flow.R,movies.csv" {
		t.Fatalf("code_package paths %v; want sorted data/x.csv,flow.R,movies.csv", got)
	}
	// A run without a package has none.
	plain := request(t, "work")
	ev = runToEnd(t, c, plain)
	run, err = c.GetRun(context.Background(), &pb.GetRunRequest{RunId: ev.RunId, Flow: "RPCFlow", DatastoreRoot: plain.Options.DatastoreRoot})
	if err != nil || len(run.CodePackage) != 0 {
		t.Fatalf("GetRun of a run without a package: %v, %v", run.GetCodePackage(), err)
	}
}

func TestBadCodePackageIsInvalidArgumentAndWritesNothing(t *testing.T) {
	c := serve(t, "")
	for _, tc := range []struct {
		files []*pb.PackageFile
		want  string
	}{
		{[]*pb.PackageFile{{Path: "ok.R"}, {Path: "../secret.csv"}}, `code package: invalid path "../secret.csv"`},
		{[]*pb.PackageFile{{Path: "a.R"}, {Path: "a.R"}}, `code package: path "a.R" is given twice`},
	} {
		req := request(t, "work")
		req.Flow.Package = tc.files
		_, err := c.Validate(context.Background(), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v; want InvalidArgument with %q", err, tc.want)
		}
		stream, err := c.StartRun(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartRun: %v; want InvalidArgument with %q", err, tc.want)
		}
		if _, err := os.Stat(req.Options.DatastoreRoot); !os.IsNotExist(err) {
			t.Errorf("datastore written for a bad package (%s)", tc.want)
		}
	}
}
