package rpc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

func TestGRPCError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"invalid", errs.Invalid("--max-workers must be at least 1 (got 0)"), codes.InvalidArgument},
		{"not found", errs.NotFound("cannot resume: run 7 of flow F does not exist"), codes.NotFound},
		{"precondition", errs.Precondition("AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE"), codes.FailedPrecondition},
		{"unavailable", errs.Unavailable("S3 GET s3://b/k: connection refused"), codes.Unavailable},
		{"corrupt", fmt.Errorf("artifact x: %w", errs.Corrupt("blob ab of flow F is corrupt")), codes.DataLoss},
		{"wrapped keeps its kind", fmt.Errorf("allocate a run id: %w", errs.Unavailable("S3 LIST: timeout")), codes.Unavailable},
		{"no bucket", fmt.Errorf("list flows: %w", s3io.ErrNoBucket), codes.FailedPrecondition},
		{"missing S3 object", fmt.Errorf("read: %w", s3io.ErrNotFound), codes.NotFound},
		{"missing file", fmt.Errorf("run 3: %w", fs.ErrNotExist), codes.NotFound},
		{"cancelled", fmt.Errorf("list: %w", context.Canceled), codes.Canceled},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"no kind", errors.New("disk on fire"), codes.Internal},
		{"a status already", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := grpcError(tc.err)
			st, ok := status.FromError(got)
			if !ok || st.Code() != tc.code || st.Message() != status.Convert(tc.err).Message() {
				t.Errorf("grpcError(%q) = %v, want %v with the same message", tc.err, got, tc.code)
			}
		})
	}
	if grpcError(nil) != nil {
		t.Error("grpcError(nil) is not nil")
	}
}
