// Package errs names the kinds of engine errors that callers tell apart: a
// bad request, something that does not exist, a missing setting or resource
// (the request cannot succeed until someone changes that), a datastore or
// service that could not be reached (trying again may help), and stored data
// that is corrupt. Errors keep
// their messages and chains; a kind is a mark on the chain (errors.Is). The
// gRPC service maps each kind to a status code (rpc.grpcError).
package errs

import (
	"errors"
	"fmt"
)

// The kinds.
var (
	// ErrInvalid: the request is wrong (a bad flow, option or argument).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: what the request names does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: the request is fine but cannot succeed as things are
	// (a setting is missing, a resource can never serve it).
	ErrPrecondition = errors.New("failed precondition")
	// ErrUnavailable: a datastore or service could not be read or written.
	ErrUnavailable = errors.New("unavailable")
	// ErrCorrupt: stored data is damaged (a blob whose content does not
	// hash to its address): reading it again will not help.
	ErrCorrupt = errors.New("data loss")
)

// kinded is an error marked with a kind.
type kinded struct {
	kind error
	err  error
}

func (k *kinded) Error() string        { return k.err.Error() }
func (k *kinded) Unwrap() error        { return k.err }
func (k *kinded) Is(target error) bool { return target == k.kind }

// Mark returns err marked as kind (one of the kinds above): the same message,
// errors.Is(err, kind) and errors.Is for everything err wraps. Mark(k, nil)
// is nil.
func Mark(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kinded{kind: kind, err: err}
}

// MarkIfNone marks err as kind unless it has a kind already.
func MarkIfNone(kind, err error) error {
	if err == nil || Kind(err) != nil {
		return err
	}
	return Mark(kind, err)
}

// Kind returns the kind of err: the outermost mark on its chain (the most
// specific word on it), or nil when it has none.
func Kind(err error) error {
	var k *kinded
	if errors.As(err, &k) {
		return k.kind
	}
	return nil
}

// Invalid formats an error (as fmt.Errorf, %w included) of kind ErrInvalid.
func Invalid(format string, args ...any) error {
	return Mark(ErrInvalid, fmt.Errorf(format, args...))
}

// NotFound formats an error of kind ErrNotFound.
func NotFound(format string, args ...any) error {
	return Mark(ErrNotFound, fmt.Errorf(format, args...))
}

// Precondition formats an error of kind ErrPrecondition.
func Precondition(format string, args ...any) error {
	return Mark(ErrPrecondition, fmt.Errorf(format, args...))
}

// Unavailable formats an error of kind ErrUnavailable.
func Unavailable(format string, args ...any) error {
	return Mark(ErrUnavailable, fmt.Errorf(format, args...))
}

// Corrupt formats an error of kind ErrCorrupt.
func Corrupt(format string, args ...any) error {
	return Mark(ErrCorrupt, fmt.Errorf(format, args...))
}
