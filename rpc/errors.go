package rpc

import (
	"context"
	"errors"
	"io/fs"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// grpcError is the one mapping of engine errors to gRPC statuses: the
// error's kind (engine/errs) picks the code, and its message, which the R
// client shows as it is, is the status message. Errors that are gRPC
// statuses already (storeFor's) pass through.
//
//	errs.ErrInvalid       InvalidArgument     a bad flow, option or argument
//	errs.ErrNotFound      NotFound            (so is fs.ErrNotExist without a kind)
//	errs.ErrPrecondition  FailedPrecondition  not configured; can never run; no bucket
//	errs.ErrUnavailable   Unavailable         S3 or AWS could not be reached
//	errs.ErrCorrupt       DataLoss            a blob whose content is not its address
//	context cancelled     Canceled, DeadlineExceeded
//	anything else         Internal
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch errs.Kind(err) {
	case errs.ErrInvalid:
		return codes.InvalidArgument
	case errs.ErrNotFound:
		return codes.NotFound
	case errs.ErrPrecondition:
		return codes.FailedPrecondition
	case errs.ErrUnavailable:
		return codes.Unavailable
	case errs.ErrCorrupt:
		return codes.DataLoss
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return codes.NotFound
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// notFoundOr is grpcError under its former name (a datastore error as
// NotFound, or as its kind says).
func notFoundOr(err error) error { return grpcError(err) }
