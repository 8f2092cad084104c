package rpc

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime/debug"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// No request can crash the engine or reach outside its datastore: every
// call runs under recover (a panic becomes an Internal error, the stack goes
// to the engine's log), and every flow, run, step and task name in a request
// is checked before it can become a path or a key.

// nameRe is what a flow, step, run or task name may look like: no "/", no
// "\", no NUL, no "." or ".." (checked apart).
var nameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// checkName reports a name that could leave its folder; empty means absent.
func checkName(what, v string) error {
	if v == "" || (nameRe.MatchString(v) && v != "." && v != ".." && len(v) <= 255) {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "invalid %s %q: names have letters, digits, _ and - only", what, v)
}

// checkRequest checks the names a request carries, whatever its type.
func checkRequest(req any) error {
	var names [][2]string
	if g, ok := req.(interface{ GetFlow() string }); ok {
		names = append(names, [2]string{"flow name", g.GetFlow()})
	}
	if g, ok := req.(interface{ GetRunId() string }); ok {
		names = append(names, [2]string{"run id", g.GetRunId()})
	}
	if g, ok := req.(interface{ GetStep() string }); ok {
		names = append(names, [2]string{"step name", g.GetStep()})
	}
	if g, ok := req.(interface{ GetTaskId() string }); ok {
		names = append(names, [2]string{"task id", g.GetTaskId()})
	}
	if g, ok := req.(interface{ GetArtifact() string }); ok {
		names = append(names, [2]string{"artifact name", g.GetArtifact()})
	}
	if g, ok := req.(interface{ GetName() string }); ok {
		names = append(names, [2]string{"artifact name", g.GetName()})
	}
	for _, n := range names {
		if err := checkName(n[0], n[1]); err != nil {
			return err
		}
	}
	if g, ok := req.(interface{ GetPathspec() string }); ok && g.GetPathspec() != "" {
		for _, part := range strings.Split(g.GetPathspec(), "/") {
			if part == "" || checkName("pathspec part", part) != nil {
				return status.Errorf(codes.InvalidArgument, "invalid pathspec %q: expected RUN/STEP or RUN/STEP/TASK", g.GetPathspec())
			}
		}
	}
	return nil
}

// recovered turns a panic into an error and logs its stack.
func recovered(method string, err *error) {
	if p := recover(); p != nil {
		fmt.Fprintf(os.Stderr, "metaflow-engine: panic in %s: %v\n%s", method, p, debug.Stack())
		*err = status.Errorf(codes.Internal, "internal error in %s: %v (the engine goes on; its log has the details)", method, p)
	}
}

func guardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer recovered(info.FullMethod, &err)
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func guardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer recovered(info.FullMethod, &err)
	return h(srv, &checkedStream{ServerStream: ss})
}

// checkedStream checks the request message of a server-streaming call.
type checkedStream struct{ grpc.ServerStream }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkRequest(m)
}
