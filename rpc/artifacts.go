package rpc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// artifactChunk is the size of one ArtifactChunk: large enough that a
// message's overhead does not count, small enough to stream.
const artifactChunk = 1 << 20

// ReadArtifact implements the ReadArtifact RPC: the artifact's blob in
// chunks, hashed as it is read. A blob whose content does not match its
// content address ends the stream with DataLoss, so the client never takes
// a corrupt value for the artifact.
func (s *Server) ReadArtifact(req *pb.ReadArtifactRequest, stream pb.Engine_ReadArtifactServer) error {
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("%s/%s/%s/%s", req.Flow, req.RunId, req.Step, req.TaskId)
	arts, err := store.GetArtifacts(req.Flow, req.RunId, req.Step, req.TaskId)
	if err != nil {
		return notFoundOr(err)
	}
	a, ok := arts[req.Name]
	if !ok {
		return status.Errorf(codes.NotFound, "task %s has no artifact %q", where, req.Name)
	}
	path, err := store.FetchBlob(req.Flow, a.SHA)
	if err != nil {
		return notFoundOr(fmt.Errorf("artifact %s of %s: %w", req.Name, where, err))
	}
	f, err := os.Open(path)
	if err != nil {
		return notFoundOr(fmt.Errorf("artifact %s of %s: %w", req.Name, where, err))
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, artifactChunk)
	first := true
	for {
		if err := stream.Context().Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		n, rerr := io.ReadFull(f, buf)
		if n > 0 || first {
			h.Write(buf[:n])
			chunk := &pb.ArtifactChunk{Data: buf[:n]}
			if first {
				chunk.Size = a.Size
				first = false
			}
			// SendMsg encodes the message before it returns: buf can be reused.
			if err := stream.Send(chunk); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return status.Errorf(codes.Internal, "read artifact %s of %s: %v", req.Name, where, rerr)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA {
		return status.Errorf(codes.DataLoss, "artifact %s of %s is corrupt: its blob's content (sha256 %s) does not match its address %s",
			req.Name, where, got, a.SHA)
	}
	return nil
}
