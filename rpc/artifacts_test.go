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
	"google.golang.org/protobuf/proto"

	"github.com/metaflow-r/metaflow/engine/datastore"
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

func TestGetTaskGivesVerifiedStamps(t *testing.T) {
	blob := []byte("the artifact's bytes")
	c := serveExec(t, "", blobExec{blob})
	req := request(t, "work")
	if ev := runToEnd(t, c, req); ev == nil || !ev.Success {
		t.Fatalf("run: %v", ev)
	}
	root := req.Options.DatastoreRoot
	get := func(artifact string) (*pb.ArtifactInfo, error) {
		ti, err := c.GetTask(context.Background(), &pb.GetTaskRequest{DatastoreRoot: root, Flow: "RPCFlow",
			RunId: "1", Step: "end", TaskId: "3", Artifact: artifact})
		if err != nil {
			return nil, err
		}
		if len(ti.Artifacts) != 1 || ti.Artifacts[0].Name != "x" {
			t.Fatalf("artifacts: %v", ti.Artifacts)
		}
		return ti.Artifacts[0], nil
	}
	stampOfFile := func(p string) *pb.FileStamp {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := datastore.StampOf(fi)
		return fileStamp(st)
	}
	// Listed: the file with the stamp it was stored under.
	a, err := get("")
	if err != nil || a.Stamp == nil || !proto.Equal(a.Stamp, stampOfFile(a.Path)) || a.Stamp.Size != int64(len(blob)) {
		t.Fatalf("GetTask = %v, %v; want x's file with its stamp", a, err)
	}
	// Changed in place (a byte flipped through the file): listed without a
	// stamp, and asked for by name it is DataLoss naming the artifact.
	f, err := os.OpenFile(a.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{blob[0] ^ 1}, 0)
	f.Close()
	if a, err := get(""); err != nil || a.Path == "" || a.Stamp != nil {
		t.Fatalf("GetTask of a changed blob = %v, %v; want its path without a stamp", a, err)
	}
	_, err = get("x")
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "artifact x of RPCFlow/1/end/3 is corrupt") {
		t.Fatalf("GetTask of a corrupt artifact: %v; want DataLoss naming it", err)
	}
	// Restored, but with a new ctime: asked for by name, it is hashed and
	// stamped again.
	f, _ = os.OpenFile(a.Path, os.O_WRONLY, 0)
	f.WriteAt(blob[:1], 0)
	f.Close()
	if a, err := get("x"); err != nil || !proto.Equal(a.Stamp, stampOfFile(a.Path)) {
		t.Fatalf("GetTask of a restored artifact = %v, %v; want it verified and stamped", a, err)
	}
}
