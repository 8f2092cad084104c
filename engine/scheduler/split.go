package scheduler

import (
	"bytes"
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
// split of a foreach value cuts it, once, into its elements' R-value
// documents, so a split's cost does not grow with the number of splits.
// Small elements stay in memory and travel in their split's spec (a file
// per element cost a file creation per split: ~0.1 ms of the engine's time
// on ext4, more than the rest of a split's bookkeeping); a value with a big
// element, or big in all, is cut into one file per element (in a staging
// folder of the run, removed when the run ends). Values whose x[[i]] is not
// plain extraction (a factor, a Date, a class with its own [[) are not cut:
// their splits read the whole value and take x[[i]] in R.

// Elements travel in specs only while each is at most splitDocMax bytes and
// all of one value at most splitDocsMax (the engine holds them for the run).
var (
	splitDocMax  = 256 << 10
	splitDocsMax = 16 << 20
)

type splitSet struct {
	once   sync.Once
	docs   [][]byte          // element i's document, when they are in memory
	files  []string          // element i's file, when they are in files
	stamps []datastore.Stamp // element i's file's stat once written
	err    error
}

// split is element index (0-based) of the foreach value in blob sha: its
// document, or the file holding it with its stamp (the runtime checks it is
// the file the engine wrote); neither when its split must extract it in R.
type split struct {
	doc   []byte
	file  string
	stamp datastore.Stamp
}

func (r *Run) splitOf(ctx context.Context, flow, sha string, index int) (split, error) {
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
	s.once.Do(func() { s.err = r.cutForeach(ctx, flow, sha, s) })
	n := max(len(s.docs), len(s.files))
	if s.err != nil || n == 0 {
		return split{}, s.err
	}
	if index < 0 || index >= n {
		return split{}, fmt.Errorf("foreach split %d of a value with %d elements", index, n)
	}
	if s.docs != nil {
		return split{doc: s.docs[index]}, nil
	}
	return split{file: s.files[index], stamp: s.stamps[index]}, nil
}

// cutForeach fills s with the elements of the foreach value in blob sha
// (nothing when the value is not cut).
func (r *Run) cutForeach(ctx context.Context, flow, sha string, s *splitSet) error {
	blob, err := r.Store.Open(ctx, flow, sha)
	if err != nil {
		return fmt.Errorf("read the foreach value: %w", err)
	}
	defer blob.Close()
	var docs [][]byte
	total := 0
	dir := ""
	var files []string
	var stamps []datastore.Stamp
	toFile := func(doc []byte) error {
		if dir == "" {
			d, err := r.stagingDir(ctx, "foreach")
			if err != nil {
				return err
			}
			r.splitMu.Lock()
			r.splitDirs = append(r.splitDirs, d)
			r.splitMu.Unlock()
			dir = d
		}
		p := filepath.Join(dir, strconv.Itoa(len(files))+".mpk")
		if err := os.WriteFile(p, doc, 0o644); err != nil {
			return fmt.Errorf("write a foreach element: %w", err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("write a foreach element: %w", err)
		}
		st, _ := datastore.StampOf(fi)
		files, stamps = append(files, p), append(stamps, st)
		return nil
	}
	var writeErr error
	ok, err := rvalue.Elements(blob, func(doc []byte) error {
		if files == nil && len(doc) <= splitDocMax && total+len(doc) <= splitDocsMax {
			docs = append(docs, bytes.Clone(doc))
			total += len(doc)
			return nil
		}
		for _, d := range docs { // too big to hold: all go to files
			if writeErr = toFile(d); writeErr != nil {
				return writeErr
			}
		}
		docs = nil
		writeErr = toFile(doc)
		return writeErr
	})
	// The decoder stops at the value's end: read the blob to its end too,
	// where the checked reader compares the content with its address (a
	// damaged blob may still decode, as another value).
	if _, derr := io.Copy(io.Discard, blob); derr != nil && writeErr == nil {
		return fmt.Errorf("read the foreach value: %w", derr)
	}
	switch {
	case writeErr != nil:
		return writeErr
	case errors.Is(err, errs.ErrCorrupt):
		return err
	case err != nil || !ok:
		// Not cut (a value R reads its own way, or not an R value at all):
		// the split reads the whole value, and R says what is wrong with it.
		return nil
	}
	if files != nil {
		s.files, s.stamps = files, stamps
	} else if docs != nil {
		s.docs = docs
	}
	return nil
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
