package datastore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// checkSHA refuses a blob name that is no lowercase hex sha256 (it becomes
// a path and a key).
func checkSHA(flow, sha string) error {
	if len(sha) != 64 || strings.ToLower(sha) != sha {
		return errs.Invalid("blob %q of flow %s: not a sha256", sha, flow)
	}
	if _, err := hex.DecodeString(sha); err != nil {
		return errs.Invalid("blob %q of flow %s: not a sha256", sha, flow)
	}
	return nil
}

// verifier reads a blob's content and hashes it; at EOF it fails with an
// ErrCorrupt error when the content is not the blob's. Reads stop, with the
// context's error, once ctx is done.
type verifier struct {
	ctx       context.Context
	r         io.Reader
	close     func() error
	h         hash.Hash
	flow, sha string
	where     string // the store, for messages
	size      int64  // the content's size, -1 if not known
	err       error  // sticky: the end's verdict, or the first failure
}

func newVerifier(ctx context.Context, r io.Reader, close func() error, flow, sha, where string) *verifier {
	return &verifier{ctx: ctx, r: r, close: close, h: sha256.New(), flow: flow, sha: sha, where: where, size: -1}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.ctx.Err() != nil {
		v.err = fmt.Errorf("read blob %s of flow %s: %w", v.sha, v.flow, context.Cause(v.ctx))
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	switch {
	case err == io.EOF:
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.sha {
			v.err = errs.Corrupt("blob %s of flow %s in %s is corrupt: its content hashes to %s", v.sha, v.flow, v.where, got)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	case err != nil:
		if v.ctx.Err() != nil {
			err = context.Cause(v.ctx)
		}
		v.err = fmt.Errorf("read blob %s of flow %s: %w", v.sha, v.flow, err)
		return n, v.err
	}
	return n, nil
}

func (v *verifier) Close() error {
	if v.close == nil {
		return nil
	}
	return v.close()
}

// verifiedAs is the sha a reader checks its content against, if it is one
// of this package's verifiers: PutSHA does not hash such a stream again (the
// reader itself fails at its end if the content is not sha's).
func verifiedAs(r io.Reader) string {
	if v, ok := r.(*verifier); ok {
		return v.sha
	}
	return ""
}

// nonce is a short random name part.
func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hashingReader hashes and counts what is read through it, and stops with
// the context's error once ctx is done.
type hashingReader struct {
	ctx context.Context
	r   io.Reader
	h   hash.Hash
	n   int64
}

func newHashingReader(ctx context.Context, r io.Reader) *hashingReader {
	return &hashingReader{ctx: ctx, r: r, h: sha256.New()}
}

func (h *hashingReader) Read(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashingReader) artifact() Artifact {
	return Artifact{SHA: hex.EncodeToString(h.h.Sum(nil)), Size: h.n}
}

// checkedReader is what PutSHA writes from: r itself when it verifies its
// own content as sha (Open's reader), else r hashed as it is read, failing
// at its end when the content is not sha's.
func checkedReader(ctx context.Context, r io.Reader, flow, sha, where string) io.Reader {
	if verifiedAs(r) == sha {
		return r
	}
	return newVerifier(ctx, r, nil, flow, sha, where)
}

// CopyBlob makes dst hold the blob src holds (nothing is read when dst has
// it), reading it once: Open checks the content on the way.
func CopyBlob(ctx context.Context, dst, src Blobs, flow, sha string) (Artifact, error) {
	if size, ok, err := dst.Has(ctx, flow, sha); err != nil || ok {
		return Artifact{SHA: sha, Size: size}, err
	}
	rc, err := src.Open(ctx, flow, sha)
	if err != nil {
		return Artifact{}, err
	}
	defer rc.Close()
	return dst.PutSHA(ctx, flow, sha, rc)
}

// LocalCopy is the blob's file on this machine when it has one already,
// without fetching it (a Local's blob; an S3's cached copy): for a client
// that reads files itself and asks for the others when it needs them. Its
// Stamp is set only when the file's stat equals its verified stamp (else
// the client asks LocalFile, which hashes it).
func LocalCopy(b Blobs, flow, sha string) (BlobFile, bool) {
	if lc, ok := b.(interface {
		localCopy(flow, sha string) (BlobFile, bool)
	}); ok && checkSHA(flow, sha) == nil {
		return lc.localCopy(flow, sha)
	}
	return BlobFile{}, false
}

func (l *Local) localCopy(flow, sha string) (BlobFile, bool) {
	p := l.path(Blob(flow, sha))
	fi, err := os.Stat(p)
	if err != nil {
		return BlobFile{}, false
	}
	bf := BlobFile{Path: p}
	if st, ok := stampOf(fi); ok && l.stamped(flow, sha, st) {
		bf.Stamp = st
	}
	return bf, true
}

func (s *S3) localCopy(flow, sha string) (BlobFile, bool) {
	if s.cache == nil {
		return BlobFile{}, false
	}
	return s.cache.localCopy(flow, sha)
}
