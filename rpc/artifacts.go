package rpc

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/errs"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// artifactChunk is the size of one ArtifactChunk: large enough that a
// message's overhead does not count, small enough to stream.
const artifactChunk = 1 << 20

// ReadArtifact implements the ReadArtifact RPC: the artifact's blob in
// chunks, read through the datastore's checked reader (Blobs.Open). A blob
// whose content does not match its content address ends the stream with
// DataLoss, so the client never takes a corrupt value for the artifact.
func (s *Server) ReadArtifact(req *pb.ReadArtifactRequest, stream pb.Engine_ReadArtifactServer) error {
	ctx := stream.Context()
	store, err := storeFor(req.DatastoreRoot)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("%s/%s/%s/%s", req.Flow, req.RunId, req.Step, req.TaskId)
	arts, err := store.GetArtifacts(ctx, req.Flow, req.RunId, req.Step, req.TaskId)
	if err != nil {
		return grpcError(err)
	}
	a, ok := arts[req.Name]
	if !ok {
		return status.Errorf(codes.NotFound, "task %s has no artifact %q", where, req.Name)
	}
	rc, err := store.Open(ctx, req.Flow, a.SHA)
	if err != nil {
		return grpcError(fmt.Errorf("artifact %s of %s: %w", req.Name, where, err))
	}
	defer rc.Close()
	buf := make([]byte, artifactChunk)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 || first {
			chunk := &pb.ArtifactChunk{Data: buf[:n]}
			if first {
				chunk.Size = a.Size
			}
			// SendMsg encodes the message before it returns: buf can be reused.
			if err := stream.Send(chunk); err != nil {
				return err
			}
		}
		switch {
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			return nil
		case errors.Is(rerr, errs.ErrCorrupt):
			return grpcError(fmt.Errorf("artifact %s of %s is corrupt: %w", req.Name, where, rerr))
		case rerr != nil:
			return grpcError(fmt.Errorf("read artifact %s of %s: %w", req.Name, where, rerr))
		}
	}
}
