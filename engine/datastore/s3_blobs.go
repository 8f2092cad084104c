package datastore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// Has reports whether S3 holds the blob (a HEAD), and its size.
func (s *S3) Has(ctx context.Context, flow, sha string) (int64, bool, error) {
	if err := checkSHA(flow, sha); err != nil {
		return 0, false, err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	size, err := s.c.Size(octx, s.bucket, s.key(Blob(flow, sha)))
	if errors.Is(err, s3io.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("blob %s of flow %s: %w", sha, flow, err)
	}
	return size, true, nil
}

// Put writes r into the cache (or a temp file, without one), hashing it,
// and uploads the file unless S3 has the blob already.
func (s *S3) Put(ctx context.Context, flow string, r io.Reader) (Artifact, error) {
	if s.cache != nil {
		a, err := s.cache.Put(ctx, flow, r)
		if err != nil {
			return Artifact{}, err
		}
		return a, s.upload(ctx, flow, a, s.cache.path(Blob(flow, a.SHA)))
	}
	tmp, err := os.CreateTemp("", "metaflow-blob-*")
	if err != nil {
		return Artifact{}, fmt.Errorf("store a blob of flow %s: %w", flow, err)
	}
	defer os.Remove(tmp.Name())
	h := newHashingReader(ctx, r)
	_, err = io.Copy(tmp, h)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("store a blob of flow %s: %w", flow, err)
	}
	a := h.artifact()
	return a, s.upload(ctx, flow, a, tmp.Name())
}

// upload puts the file holding blob a at its key unless S3 has it (same
// name, same content), within the transfer's deadline.
func (s *S3) upload(ctx context.Context, flow string, a Artifact, file string) error {
	tctx, cancel := context.WithTimeout(ctx, transferTimeout(a.Size))
	defer cancel()
	if err := s.c.PutFileIfMissing(tctx, s.bucket, s.key(Blob(flow, a.SHA)), file); err != nil {
		return fmt.Errorf("upload blob %s of flow %s: %w", a.SHA, flow, err)
	}
	return nil
}

// PutSHA stores r as the blob unless S3 has it, checking the content as it
// goes: through the cache (then uploaded from there), or, without one,
// streamed up, the upload abandoned (nothing stored) if it is not sha's.
func (s *S3) PutSHA(ctx context.Context, flow, sha string, r io.Reader) (Artifact, error) {
	if size, ok, err := s.Has(ctx, flow, sha); err != nil || ok {
		return Artifact{SHA: sha, Size: size}, err
	}
	if s.cache != nil {
		a, err := s.cache.PutSHA(ctx, flow, sha, r)
		if err != nil {
			return Artifact{}, err
		}
		return a, s.upload(ctx, flow, a, s.cache.path(Blob(flow, sha)))
	}
	tctx, cancel := context.WithTimeout(ctx, transferTimeout(sizeOf(r)))
	defer cancel()
	var n int64
	cr := &countingReader{r: checkedReader(tctx, r, flow, sha, s.Location()), n: &n}
	if err := s.c.PutReader(tctx, s.bucket, s.key(Blob(flow, sha)), cr); err != nil {
		return Artifact{}, fmt.Errorf("upload blob %s of flow %s: %w", sha, flow, err)
	}
	return Artifact{SHA: sha, Size: n}, nil
}

// sizeOf is how many bytes r will give, when it can tell (-1 when not).
func sizeOf(r io.Reader) int64 {
	switch r := r.(type) {
	case *verifier:
		return r.size
	case interface{ Size() int64 }: // bytes.Reader, strings.Reader
		return r.Size()
	case *os.File:
		if fi, err := r.Stat(); err == nil {
			return fi.Size()
		}
	}
	return -1
}

// PutFile moves a staged file into the cache (hashing it) and uploads it
// unless S3 has the blob; without a cache it is hashed, uploaded from where
// it is and removed.
func (s *S3) PutFile(ctx context.Context, flow, path string) (Artifact, error) {
	if s.cache != nil {
		a, err := s.cache.PutFile(ctx, flow, path)
		if err != nil {
			return Artifact{}, err
		}
		return a, s.upload(ctx, flow, a, s.cache.path(Blob(flow, a.SHA)))
	}
	a, err := hashFile(ctx, path)
	if err != nil {
		return Artifact{}, fmt.Errorf("store %s in flow %s: %w", path, flow, err)
	}
	if err := s.upload(ctx, flow, a, path); err != nil {
		return Artifact{}, err
	}
	os.Remove(path)
	return a, nil
}

// Open reads the cache's copy when this machine has one, else streams the
// object (one GET); either way the content is checked.
func (s *S3) Open(ctx context.Context, flow, sha string) (io.ReadCloser, error) {
	if err := checkSHA(flow, sha); err != nil {
		return nil, err
	}
	if s.cache != nil {
		if _, ok, err := s.cache.Has(ctx, flow, sha); err == nil && ok {
			return s.cache.Open(ctx, flow, sha)
		}
	}
	// The body is read after Open returns: the request's context lives
	// until Close, with the transfer's deadline once the size is known.
	gctx, cancel := context.WithCancelCause(ctx)
	body, size, err := s.c.GetReader(gctx, s.bucket, s.key(Blob(flow, sha)))
	if err != nil {
		cancel(nil)
		if errors.Is(err, s3io.ErrNotFound) {
			return nil, errs.NotFound("blob %s of flow %s not found in %s: %w", sha, flow, s.Location(), fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open blob %s of flow %s: %w", sha, flow, err)
	}
	limit := transferTimeout(size)
	stop := time.AfterFunc(limit, func() {
		cancel(fmt.Errorf("%w: reading blob %s of flow %s took over %s", context.DeadlineExceeded, sha, flow, limit))
	})
	v := newVerifier(gctx, body, func() error {
		stop.Stop()
		defer cancel(nil)
		return body.Close()
	}, flow, sha, s.Location())
	v.size = size
	return v, nil
}

// LocalFile is the cache's copy of the blob, verified (by its stamp, else
// hashed), or downloaded first (in parallel parts, then checked, then
// renamed into place and stamped) if this machine has none. A cached copy
// that is corrupt is replaced by a fresh download: S3 is the store of
// record.
func (s *S3) LocalFile(ctx context.Context, flow, sha string) (BlobFile, error) {
	if err := checkSHA(flow, sha); err != nil {
		return BlobFile{}, err
	}
	if s.cache == nil {
		return BlobFile{}, s.errNoCache(fmt.Sprintf("blob %s of flow %s", sha, flow))
	}
	bf, err := s.cache.verifiedFile(ctx, flow, sha)
	switch {
	case err == nil:
		return bf, nil
	case errors.Is(err, errs.ErrCorrupt):
		os.Remove(s.cache.path(Blob(flow, sha)))
	case !errors.Is(err, errs.ErrNotFound):
		return BlobFile{}, err
	}
	if err := s.download(ctx, flow, sha); err != nil {
		return BlobFile{}, err
	}
	return s.cache.verifiedFile(ctx, flow, sha)
}

// download fetches the blob into the cache: checked, then renamed into
// place and stamped.
func (s *S3) download(ctx context.Context, flow, sha string) error {
	size, ok, err := s.Has(ctx, flow, sha)
	if err != nil {
		return err
	}
	if !ok {
		return errs.NotFound("blob %s of flow %s not found in %s: %w", sha, flow, s.Location(), fs.ErrNotExist)
	}
	dir, err := s.cache.Staging(ctx, flow)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".get-"+sha+"-"+nonce())
	defer os.Remove(tmp)
	tctx, cancel := context.WithTimeout(ctx, transferTimeout(size))
	defer cancel()
	if err := s.c.GetFile(tctx, s.bucket, s.key(Blob(flow, sha)), tmp); err != nil {
		return fmt.Errorf("download blob %s of flow %s: %w", sha, flow, err)
	}
	pre, _ := os.Stat(tmp)
	got, err := hashFile(ctx, tmp)
	if err != nil {
		return fmt.Errorf("download blob %s of flow %s: %w", sha, flow, err)
	}
	if got.SHA != sha {
		return errs.Corrupt("blob %s of flow %s in %s is corrupt: its content hashes to %s", sha, flow, s.Location(), got.SHA)
	}
	if err := s.cache.place(ctx, flow, sha, tmp, pre); err != nil {
		return fmt.Errorf("download blob %s of flow %s: %w", sha, flow, err)
	}
	return nil
}

// Staging is the cache's staging folder.
func (s *S3) Staging(ctx context.Context, flow string) (string, error) {
	if s.cache == nil {
		return "", s.errNoCache("staging folder of flow " + flow)
	}
	return s.cache.Staging(ctx, flow)
}

// LogFile is the cache file the attempt's output is written to as it runs
// ("" without a cache).
func (s *S3) LogFile(flow, runID, step, taskID string, attempt int, stream string) string {
	if s.cache == nil {
		return ""
	}
	return s.cache.LogFile(flow, runID, step, taskID, attempt, stream)
}

// SaveLogs uploads the attempt's log files from the cache (within
// logSaveTimeout, so a stalled connection does not hold the scheduler).
func (s *S3) SaveLogs(ctx context.Context, flow, runID, step, taskID string, attempt int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save the logs of %s/%s/%s/%s: %w", flow, runID, step, taskID, err)
	}
	if s.cache == nil {
		return nil // no files written here
	}
	ctx, cancel := context.WithTimeout(ctx, logSaveTimeout)
	defer cancel()
	for _, stream := range Streams {
		p := s.cache.LogFile(flow, runID, step, taskID, attempt, stream)
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			continue // nothing was written (ReadLog of no object is empty)
		}
		if err := s.c.PutFile(ctx, s.bucket, s.key(AttemptLog(flow, runID, step, taskID, attempt, stream)), p); err != nil {
			return fmt.Errorf("upload %s log: %w", stream, err)
		}
	}
	return nil
}

// ReadLog reads this machine's copy when it has one (it ran the attempt:
// the copy is live, or the one that was uploaded), else the uploaded log.
func (s *S3) ReadLog(ctx context.Context, flow, runID, step, taskID string, attempt int, stream string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read the %s log of %s/%s/%s/%s: %w", stream, flow, runID, step, taskID, err)
	}
	if s.cache != nil {
		if b, err := os.ReadFile(s.cache.LogFile(flow, runID, step, taskID, attempt, stream)); err == nil {
			return b, nil
		}
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	b, err := s.c.GetBytes(octx, s.bucket, s.key(AttemptLog(flow, runID, step, taskID, attempt, stream)))
	if errors.Is(err, s3io.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the %s log of %s/%s/%s/%s: %w", stream, flow, runID, step, taskID, err)
	}
	return b, nil
}
