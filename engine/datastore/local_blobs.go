package datastore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// Has reports whether the folder holds the blob, and its size.
func (l *Local) Has(ctx context.Context, flow, sha string) (int64, bool, error) {
	if err := checkSHA(flow, sha); err != nil {
		return 0, false, err
	}
	if err := ctx.Err(); err != nil {
		return 0, false, fmt.Errorf("blob %s of flow %s: %w", sha, flow, err)
	}
	fi, err := os.Stat(l.path(Blob(flow, sha)))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("blob %s of flow %s: %w", sha, flow, err)
	}
	return fi.Size(), true, nil
}

// Put writes r to a temp file in the flow's staging folder, hashing it, and
// renames it into place (a blob that exists already is kept).
func (l *Local) Put(ctx context.Context, flow string, r io.Reader) (Artifact, error) {
	h := newHashingReader(ctx, r)
	var a Artifact
	err := l.putTemp(ctx, flow, h, func() (string, error) {
		a = h.artifact()
		return a.SHA, nil
	})
	if err != nil {
		return Artifact{}, fmt.Errorf("store a blob of flow %s: %w", flow, err)
	}
	return a, nil
}

// PutSHA writes r into the blob sha unless the folder has it, checking the
// content as it is written.
func (l *Local) PutSHA(ctx context.Context, flow, sha string, r io.Reader) (Artifact, error) {
	if size, ok, err := l.Has(ctx, flow, sha); err != nil || ok {
		return Artifact{SHA: sha, Size: size}, err
	}
	var n int64
	cr := &countingReader{r: checkedReader(ctx, r, flow, sha, l.Root), n: &n}
	if err := l.putTemp(ctx, flow, cr, func() (string, error) { return sha, nil }); err != nil {
		return Artifact{}, fmt.Errorf("store blob %s of flow %s: %w", sha, flow, err)
	}
	return Artifact{SHA: sha, Size: n}, nil
}

// putTemp copies r into a temp file of the staging folder, makes it durable
// and renames it to the blob name returns (once r is read).
func (l *Local) putTemp(ctx context.Context, flow string, r io.Reader, name func() (string, error)) error {
	dir, err := l.Staging(ctx, flow)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync() // durable before it is renamed into the store
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	sha, err := name()
	if err != nil {
		return err
	}
	pre, _ := os.Stat(tmp.Name()) // hashed as written: stamp it as it is
	return l.place(ctx, flow, sha, tmp.Name(), pre)
}

// place renames the complete file src to the blob sha. src is removed when
// the blob exists already and is verified (its stamp, stamp.go); a blob
// file not known to be sha's content (never checked, or changed since) is
// replaced, so making an artifact again repairs a corrupt blob. pre is
// src's stat from before its content was hashed (nil if none): the blob is
// stamped when the renamed file still is what was hashed.
func (l *Local) place(ctx context.Context, flow, sha, src string, pre fs.FileInfo) error {
	dst := l.path(Blob(flow, sha))
	if fi, err := os.Stat(dst); err == nil {
		st, ok := stampOf(fi)
		if !ok || l.stamped(flow, sha, st) || os.Rename(src, dst) != nil {
			os.Remove(src)
			return nil
		}
		l.stampPlaced(flow, sha, pre)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create blob folder: %w", err)
	}
	if err := os.Rename(src, dst); err != nil {
		// src on another filesystem: copy to a temp file beside dst, then
		// rename (not stamped: the copy is hashed when first read by path).
		if err := copyAtomic(ctx, src, dst); err != nil {
			return err
		}
		os.Remove(src)
		return nil
	}
	l.stampPlaced(flow, sha, pre)
	return nil
}

// PutFile hashes a staged file and renames it into the blob its content
// names.
func (l *Local) PutFile(ctx context.Context, flow, path string) (Artifact, error) {
	pre, _ := os.Stat(path) // the stamp's witness: unchanged until placed
	a, err := hashFile(ctx, path)
	if err != nil {
		return Artifact{}, fmt.Errorf("store %s in flow %s: %w", path, flow, err)
	}
	if err := l.place(ctx, flow, a.SHA, path, pre); err != nil {
		return Artifact{}, fmt.Errorf("store %s in flow %s: %w", path, flow, err)
	}
	return a, nil
}

// hashFile hashes a file and makes it durable (it is about to be renamed
// into a store). A Prehasher in ctx that followed the file has hashed most
// of it already (prehash.go).
func hashFile(ctx context.Context, path string) (Artifact, error) {
	if p, ok := ctx.Value(prehashKey{}).(*Prehasher); ok {
		if ph := p.take(path); ph != nil {
			a, err := ph.finish(ctx, path)
			if !errors.Is(err, errNotFollowed) {
				return a, err
			}
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	h := newHashingReader(ctx, f)
	if err := drain(h); err != nil {
		return Artifact{}, err
	}
	if err := f.Sync(); err != nil {
		return Artifact{}, err
	}
	return h.artifact(), nil
}

// Open opens the blob's file behind a reader that checks its content.
func (l *Local) Open(ctx context.Context, flow, sha string) (io.ReadCloser, error) {
	if _, ok, err := l.Has(ctx, flow, sha); err != nil {
		return nil, err
	} else if !ok {
		return nil, errs.NotFound("blob %s of flow %s not found in %s: %w", sha, flow, l.Root, fs.ErrNotExist)
	}
	f, err := os.Open(l.path(Blob(flow, sha)))
	if err != nil {
		return nil, fmt.Errorf("open blob %s of flow %s: %w", sha, flow, err)
	}
	v := newVerifier(ctx, f, f.Close, flow, sha, l.Root)
	if fi, err := f.Stat(); err == nil {
		v.size = fi.Size()
	}
	return v, nil
}

// LocalFile is the blob's file in the folder, verified: by its stamp, else
// by hashing it (stamp.go).
func (l *Local) LocalFile(ctx context.Context, flow, sha string) (BlobFile, error) {
	return l.verifiedFile(ctx, flow, sha)
}

// Staging makes the flow's staging folder, beside its blobs.
func (l *Local) Staging(ctx context.Context, flow string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("staging folder of flow %s: %w", flow, err)
	}
	dir := l.path(StagingDir(flow))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create staging folder: %w", err)
	}
	return dir, nil
}

// LogFile is where the attempt's stream is written, in the folder.
func (l *Local) LogFile(flow, runID, step, taskID string, attempt int, stream string) string {
	return l.path(AttemptLog(flow, runID, step, taskID, attempt, stream))
}

// SaveLogs has nothing to do: the log files are written in place.
func (l *Local) SaveLogs(ctx context.Context, flow, runID, step, taskID string, attempt int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save the logs of %s/%s/%s/%s: %w", flow, runID, step, taskID, err)
	}
	return nil
}

// ReadLog reads a log file; a log never written reads as empty.
func (l *Local) ReadLog(ctx context.Context, flow, runID, step, taskID string, attempt int, stream string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read the %s log of %s/%s/%s/%s: %w", stream, flow, runID, step, taskID, err)
	}
	b, err := os.ReadFile(l.LogFile(flow, runID, step, taskID, attempt, stream))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the %s log of %s/%s/%s/%s: %w", stream, flow, runID, step, taskID, err)
	}
	return b, nil
}

func copyAtomic(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open staged blob: %w", err)
	}
	defer in.Close()
	return writeAtomic(ctx, dst, func(w io.Writer) error {
		_, err := io.Copy(w, newHashingReader(ctx, in)) // stops with ctx
		return err
	})
}

// countingReader counts what is read through it into *n.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
