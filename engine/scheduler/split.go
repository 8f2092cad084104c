package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/rvalue"
)

// A foreach split reads its element, not the whole foreach value: the first
// split of a foreach value cuts it, once, into one small R-value file per
// element (in a staging folder of the run, removed when the run ends), so a
// split's cost does not grow with the number of splits. Values whose x[[i]]
// is not plain extraction (a factor, a Date, a class with its own [[) are
// not cut: their splits read the whole value and take x[[i]] in R.

type splitSet struct {
	once   sync.Once
	files  []string          // element i's file; nil when the value is not cut
	stamps []datastore.Stamp // element i's file's stat once written
	err    error
}

// splitFile is the file holding element index (0-based) of the foreach
// value in blob sha, with its stamp (the runtime checks it is the file the
// engine wrote), or "" when its split must extract it in R.
func (r *Run) splitFile(ctx context.Context, flow, sha string, index int) (string, datastore.Stamp, error) {
	r.splitMu.Lock()
	if r.splits == nil {
		r.splits = map[string]*splitSet{}
	}
	s, ok := r.splits[sha]
	if !ok {
		s = &splitSet{}
		r.splits[sha] = s
	}
	r.splitMu.Unlock()
	s.once.Do(func() { s.files, s.stamps, s.err = r.cutForeach(ctx, flow, sha) })
	if s.err != nil || s.files == nil {
		return "", datastore.Stamp{}, s.err
	}
	if index < 0 || index >= len(s.files) {
		return "", datastore.Stamp{}, fmt.Errorf("foreach split %d of a value with %d elements", index, len(s.files))
	}
	return s.files[index], s.stamps[index], nil
}

func (r *Run) cutForeach(ctx context.Context, flow, sha string) ([]string, []datastore.Stamp, error) {
	dir, err := r.stagingDir(ctx, "foreach")
	if err != nil {
		return nil, nil, err
	}
	r.splitMu.Lock()
	r.splitDirs = append(r.splitDirs, dir)
	r.splitMu.Unlock()
	blob, err := r.Store.Open(ctx, flow, sha)
	if err != nil {
		return nil, nil, fmt.Errorf("read the foreach value: %w", err)
	}
	defer blob.Close()
	var files []string
	var stamps []datastore.Stamp
	var writeErr error
	ok, err := rvalue.Elements(blob, func(doc []byte) error {
		p := filepath.Join(dir, strconv.Itoa(len(files))+".mpk")
		if err := os.WriteFile(p, doc, 0o644); err != nil {
			writeErr = fmt.Errorf("write a foreach element: %w", err)
			return writeErr
		}
		fi, err := os.Stat(p)
		if err != nil {
			writeErr = fmt.Errorf("write a foreach element: %w", err)
			return writeErr
		}
		st, _ := datastore.StampOf(fi)
		files, stamps = append(files, p), append(stamps, st)
		return nil
	})
	// The decoder stops at the value's end: read the blob to its end too,
	// where the checked reader compares the content with its address (a
	// damaged blob may still decode, as another value).
	if _, derr := io.Copy(io.Discard, blob); derr != nil && writeErr == nil {
		return nil, nil, fmt.Errorf("read the foreach value: %w", derr)
	}
	switch {
	case writeErr != nil:
		return nil, nil, writeErr
	case errors.Is(err, errs.ErrCorrupt):
		return nil, nil, err
	case err != nil || !ok:
		// Not cut (a value R reads its own way, or not an R value at all):
		// the split reads the whole value, and R says what is wrong with it.
		return nil, nil, nil
	}
	return files, stamps, nil
}

// removeSplits removes the run's element files (at the end of the run).
func (r *Run) removeSplits() {
	r.splitMu.Lock()
	defer r.splitMu.Unlock()
	for _, d := range r.splitDirs {
		os.RemoveAll(d)
	}
	r.splitDirs = nil
}
