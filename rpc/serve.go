package rpc

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// ListenUnix listens on a unix socket usable only by its owner: the parent
// folder must not be writable by others and the socket is made 0600.
func ListenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("socket folder: %w", err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("socket folder %s is writable by others (mode %v): use a private folder (chmod 700)", dir, st.Mode().Perm())
	}
	_ = os.Remove(path) // a stale socket from a crashed engine
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return ln, nil
}

// NewGRPCServer builds the gRPC server. A non-empty token is required from
// every client as "authorization: Bearer <token>" (TCP serving).
func NewGRPCServer(srv *Server, token string) *grpc.Server {
	var opts []grpc.ServerOption
	opts = append(opts, grpc.MaxRecvMsgSize(1<<30), grpc.MaxSendMsgSize(1<<30))
	if token != "" {
		check := func(ctx context.Context) error {
			md, _ := metadata.FromIncomingContext(ctx)
			for _, v := range md.Get("authorization") {
				got := strings.TrimPrefix(v, "Bearer ")
				if subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1 {
					return nil
				}
			}
			return status.Error(codes.Unauthenticated, "missing or wrong token: set METAFLOW_ENGINE_TOKEN to the engine's token")
		}
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if err := check(ctx); err != nil {
					return nil, err
				}
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(s any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				return h(s, &authStream{ServerStream: ss, check: check})
			}))
	}
	// After the token check: names are checked, and panics recovered, for
	// authenticated callers only.
	opts = append(opts, grpc.ChainUnaryInterceptor(guardUnary), grpc.ChainStreamInterceptor(guardStream))
	gs := grpc.NewServer(opts...)
	pb.RegisterEngineServer(gs, srv)
	return gs
}

// authStream checks the token after the request message has been read:
// rejecting a stream before that makes libcurl (the R client) report an
// HTTP/2 framing error instead of the Unauthenticated status.
type authStream struct {
	grpc.ServerStream
	check func(context.Context) error
}

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.check(s.Context())
}
