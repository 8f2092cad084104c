package rpc

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// blobExec stages one artifact "x" holding blob in every task.
type blobExec struct{ blob []byte }

func (e blobExec) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	l.Started(7)
	if err := os.WriteFile(filepath.Join(l.Spec.OutputDir, "x.mpk"), e.blob, 0o644); err != nil {
		return 1, err
	}
	res, _ := msgpack.Marshal(map[string]any{"artifacts": []string{"x"}, "foreach_count": -1})
	return 0, os.WriteFile(filepath.Join(l.Spec.OutputDir, "_result.mpk"), res, 0o644)
}

func readArtifact(c pb.EngineClient, req *pb.ReadArtifactRequest) ([]byte, int64, error) {
	stream, err := c.ReadArtifact(context.Background(), req)
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	var size int64
	for first := true; ; first = false {
		ch, err := stream.Recv()
		if err == io.EOF {
			return buf.Bytes(), size, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if first {
			size = ch.Size
		}
		buf.Write(ch.Data)
	}
}

func TestReadArtifactStreamsVerifiedBlobs(t *testing.T) {
	cases := []struct {
		name string
		size int
	}{{"empty", 0}, {"small", 10}, {"one chunk", artifactChunk}, {"several chunks", 2*artifactChunk + 17}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			blob := make([]byte, tc.size)
			rand.Read(blob)
			c := serveExec(t, "", blobExec{blob})
			req := request(t, "work")
			if ev := runToEnd(t, c, req); ev == nil || !ev.Success {
				t.Fatalf("run: %v", ev)
			}
			root := req.Options.DatastoreRoot
			got, size, err := readArtifact(c, &pb.ReadArtifactRequest{DatastoreRoot: root, Flow: "RPCFlow", RunId: "1", Step: "end", TaskId: "3", Name: "x"})
			if err != nil || !bytes.Equal(got, blob) || size != int64(len(blob)) {
				t.Fatalf("ReadArtifact: %d bytes (size %d), %v; want %d bytes", len(got), size, err, len(blob))
			}
			_, _, err = readArtifact(c, &pb.ReadArtifactRequest{DatastoreRoot: root, Flow: "RPCFlow", RunId: "1", Step: "end", TaskId: "3", Name: "nope"})
			if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `no artifact "nope"`) {
				t.Fatalf("unknown artifact: %v", err)
			}
			_, _, err = readArtifact(c, &pb.ReadArtifactRequest{DatastoreRoot: root, Flow: "RPCFlow", RunId: "9", Step: "end", TaskId: "3", Name: "x"})
			if status.Code(err) != codes.NotFound {
				t.Fatalf("unknown run: %v", err)
			}
			if tc.size == 0 {
				return
			}
			// One flipped byte: the stream ends with DataLoss, naming the artifact.
			blobs, _ := filepath.Glob(filepath.Join(root, "RPCFlow", "data", "*", "*"))
			if len(blobs) != 1 {
				t.Fatalf("blobs: %v", blobs)
			}
			bad := append([]byte(nil), blob...)
			bad[len(bad)/2] ^= 1
			os.Chmod(blobs[0], 0o644)
			if err := os.WriteFile(blobs[0], bad, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err = readArtifact(c, &pb.ReadArtifactRequest{DatastoreRoot: root, Flow: "RPCFlow", RunId: "1", Step: "end", TaskId: "3", Name: "x"})
			if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "artifact x of RPCFlow/1/end/3 is corrupt") {
				t.Fatalf("corrupt blob: %v", err)
			}
		})
	}
}
