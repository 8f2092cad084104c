package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// reader reads runs, tasks and artifacts the way users do: through an
// engine (`metaflow-engine serve`, never killed by the suite), which
// applies the heartbeat rule to statuses and checks every blob it reads
// against its content address.
type reader struct {
	sock   string
	engine *proc
	conn   *grpc.ClientConn
	client pb.EngineClient
}

func startReader(s *suite) (*reader, error) {
	dir := filepath.Join(s.tmp, "reader")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "e.sock")
	eng, err := s.startEngine(dir, sock, s.env)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		eng.kill()
		return nil, err
	}
	return &reader{sock: sock, engine: eng, conn: conn, client: pb.NewEngineClient(conn)}, nil
}

func (r *reader) close() {
	r.conn.Close()
	r.engine.kill()
}

// errMessage is the message of an RPC error (its status message).
func errMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

func (r *reader) runs(root, flow string) ([]*pb.RunInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.client.ListRuns(ctx, &pb.ListRunsRequest{DatastoreRoot: root, Flow: flow})
	if err != nil {
		return nil, errors.New(errMessage(err))
	}
	return res.Runs, nil
}

func (r *reader) run(root, flow, runID string) (*pb.RunInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.client.GetRun(ctx, &pb.GetRunRequest{DatastoreRoot: root, Flow: flow, RunId: runID})
	if err != nil {
		return nil, errors.New(errMessage(err))
	}
	return res, nil
}

// artifact reads an artifact's bytes; an error ends the stream (a corrupt
// blob is DataLoss after its content was sent: the content is then not
// the artifact's and is dropped).
func (r *reader) artifact(root, flow, runID, step, task, name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := r.client.ReadArtifact(ctx, &pb.ReadArtifactRequest{DatastoreRoot: root, Flow: flow, RunId: runID, Step: step, TaskId: task, Name: name})
	if err != nil {
		return nil, errors.New(errMessage(err))
	}
	var out []byte
	for {
		c, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, errors.New(errMessage(err))
		}
		out = append(out, c.Data...)
	}
}

// runningOf lists what reads "running" in a run: the run itself and its
// tasks, as "run", "RUN/STEP/TASK".
func runningOf(ri *pb.RunInfo) []string {
	var out []string
	if ri.Status == "running" {
		out = append(out, fmt.Sprintf("run %s", ri.RunId))
	}
	for _, st := range ri.Steps {
		for _, t := range st.Tasks {
			if t.Status == "running" {
				out = append(out, fmt.Sprintf("task %s/%s/%s", ri.RunId, st.Name, t.TaskId))
			}
		}
	}
	return out
}
