package scheduler

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// stagingPool keeps the staging folders of a run's attempts that ended
// well, emptied, for its next attempts: making a folder and removing it cost
// the engine ~0.1 ms per task on ext4 (inode allocation), emptying one a few
// µs per file. A folder an attempt may still be written to (it failed, was
// killed or timed out: a process it started could have escaped its group)
// is removed, never reused. The run removes its pool when it ends; an
// engine killed meanwhile leaves folders CleanStaging finds by their name.
type stagingPool struct {
	mu   sync.Mutex
	free []string
}

// takeStaging is an empty private folder for an attempt's outputs: a pooled
// one, else a new one.
func (r *Run) takeStaging(ctx context.Context) (string, error) {
	r.staging.mu.Lock()
	if n := len(r.staging.free); n > 0 {
		dir := r.staging.free[n-1]
		r.staging.free = r.staging.free[:n-1]
		r.staging.mu.Unlock()
		return dir, nil
	}
	r.staging.mu.Unlock()
	return r.stagingDir(ctx, "task")
}

// giveStaging ends an attempt's use of dir: cleared and pooled when reuse
// (the attempt ended well: its outputs were renamed into the store), else
// removed.
func (r *Run) giveStaging(dir string, reuse bool) {
	if !reuse || !clearStaging(dir) {
		os.RemoveAll(dir)
		return
	}
	r.staging.mu.Lock()
	r.staging.free = append(r.staging.free, dir)
	r.staging.mu.Unlock()
}

// clearStaging removes what a task that ended well leaves in its staging
// folder besides the outputs the store took (a listing of the folder would
// cost more than the removals); false if one could not be removed. It
// unlinks (one syscall) where os.Remove would try rmdir as well after each
// name that is absent (a warm task has no spec file, a good one no error).
func clearStaging(dir string) bool {
	for _, name := range []string{ResultFile, ErrorFile, SpecFileName} {
		path := filepath.Join(dir, name)
		err := syscall.Unlink(path)
		for err == syscall.EINTR { // as os.Remove retries
			err = syscall.Unlink(path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	return true
}

// removeStaging removes the pooled folders (at the end of the run).
func (r *Run) removeStaging() {
	r.staging.mu.Lock()
	defer r.staging.mu.Unlock()
	for _, d := range r.staging.free {
		os.RemoveAll(d)
	}
	r.staging.free = nil
}
