package errs

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestKinds(t *testing.T) {
	cause := errors.New("connection refused")
	for _, tc := range []struct {
		name     string
		err      error
		kind     error
		msg      string
		wrapsOut error // something else the chain must still wrap
	}{
		{"unmarked", fmt.Errorf("read: %w", cause), nil, "read: connection refused", cause},
		{"marked", Mark(ErrUnavailable, fmt.Errorf("read: %w", cause)), ErrUnavailable, "read: connection refused", cause},
		{"formatted", Invalid("bad option %q", "x"), ErrInvalid, `bad option "x"`, nil},
		{"wrapped keeps its kind", fmt.Errorf("run 3: %w", NotFound("no such run: %w", fs.ErrNotExist)), ErrNotFound, "run 3: no such run: file does not exist", fs.ErrNotExist},
		{"outermost kind wins", Precondition("cannot: %w", Unavailable("down")), ErrPrecondition, "cannot: down", ErrUnavailable},
		{"mark if none keeps a kind", MarkIfNone(ErrPrecondition, Unavailable("down")), ErrUnavailable, "down", nil},
		{"corrupt", Corrupt("blob %s of flow F: wrong content", "ab"), ErrCorrupt, "blob ab of flow F: wrong content", nil},
		{"mark if none marks", MarkIfNone(ErrPrecondition, errors.New("no queue")), ErrPrecondition, "no queue", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Kind(tc.err); got != tc.kind {
				t.Errorf("Kind = %v, want %v", got, tc.kind)
			}
			if tc.kind != nil && !errors.Is(tc.err, tc.kind) {
				t.Errorf("errors.Is(err, %v) is false", tc.kind)
			}
			if tc.err.Error() != tc.msg {
				t.Errorf("message %q, want %q", tc.err.Error(), tc.msg)
			}
			if tc.wrapsOut != nil && !errors.Is(tc.err, tc.wrapsOut) {
				t.Errorf("the chain lost %v", tc.wrapsOut)
			}
		})
	}
	if Mark(ErrInvalid, nil) != nil || MarkIfNone(ErrInvalid, nil) != nil {
		t.Error("marking nil is not nil")
	}
}
