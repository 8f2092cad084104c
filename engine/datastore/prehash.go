package datastore

import (
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hashing a task's outputs while it writes them.
//
// PutFile must hash a staged file and make it durable before it renames it
// into the store. Done only after the task has ended, that reads every byte
// a second time and then waits for all of them to reach the disk, on the
// critical path: for a 1 GiB artifact about 0.9 s of SHA-256 and 0.5 s of
// fsync on a machine where R writes the file in ~1.5 s. A Prehasher follows
// the output files of a running task as they grow: it hashes what has been
// written so far and starts its write-back, so that when the task has ended
// PutFile hashes only the tail and the fsync finds little left to write.
//
// This relies on the task runtime's contract for its output files: each is
// written once, by the runtime alone, front to back (shim/runtime/task.R),
// in a staging folder of its own attempt. What would break the contract is
// checked where it can be: a path that no longer names the file that was
// followed, or a file whose size is not what was hashed (it shrank), is
// hashed whole again. Bytes rewritten in place after they were hashed could
// not be seen; the runtime never does that. The durability rule is
// unchanged: the file is fsynced before it is renamed into the store.

// PrehashInterval is how often a Prehasher looks for new bytes while its
// files grow; while they do not (the step is still computing) it looks half
// as often each time, down to once every prehashMaxWait.
var PrehashInterval = 50 * time.Millisecond

// PrehashFirstLook is how long a Prehasher waits before its first look: a
// task shorter than that has small outputs (hashed at once when it ends),
// and most tasks are, so they cost no folder scans.
var PrehashFirstLook = 250 * time.Millisecond

const prehashMaxWait = 200 * time.Millisecond

// prehashChunk is the read size of a Prehasher and of hashFile.
const prehashChunk = 1 << 20

// chunks recycles the read buffers: a task's outputs are mostly small, and
// a fresh MiB per task (zeroed, then collected) costs more than the reads.
var chunks = sync.Pool{New: func() any { b := make([]byte, prehashChunk); return &b }}

// writebackEvery: bytes hashed between two requests to start write-back.
const writebackEvery = 8 << 20

// Prehasher hashes the output files (*.mpk, not _*) of one task attempt's
// staging folder while the task writes them. Hand it to PutFile through
// WithPrehasher; Close it when the attempt is over.
type Prehasher struct {
	dir       string
	first     *time.Timer // starts the loop
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
	mu        sync.Mutex
	files     map[string]*partialHash // by file name, owned by the loop until stopped
}

// partialHash is one file hashed up to n bytes through f.
type partialHash struct {
	f      *os.File
	h      hash.Hash
	n      int64        // bytes hashed
	queued int64        // bytes handed to write-back
	bad    bool         // the file shrank: hash it whole at the end
	seen   atomic.Int64 // n, for progress() while the loop runs
}

// WatchStaging starts following the output files of dir. Its loop starts
// at the first look (a timer until then: most tasks end sooner, and cost no
// goroutine).
func WatchStaging(dir string) *Prehasher {
	p := &Prehasher{dir: dir, stop: make(chan struct{}), done: make(chan struct{}),
		files: map[string]*partialHash{}}
	p.first = time.AfterFunc(PrehashFirstLook, p.loop)
	return p
}

func (p *Prehasher) loop() {
	defer close(p.done)
	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	buf := *bp
	wait := PrehashInterval
	t := time.NewTimer(wait) // reset before each wait below
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if p.scan(buf) {
			wait = PrehashInterval
		} else if wait < prehashMaxWait {
			wait *= 2
		}
		t.Reset(wait)
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// isOutput reports whether a staged file name is a task output followed
// here (the runtime's own files start with "_").
func isOutput(name string) bool {
	return strings.HasSuffix(name, ".mpk") && !strings.HasPrefix(name, "_") && !strings.HasPrefix(name, ".")
}

// scan hashes what the output files gained since the last scan and
// reports whether they gained anything. A followed file whose name has gone
// (the runtime removed a partial output) is closed: held open, it would
// keep its space on a full disk, which the task's error file needs.
func (p *Prehasher) scan(buf []byte) (grew bool) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return false // the folder is gone or unreadable: PutFile hashes whole files
	}
	listed := make(map[string]bool, len(ents))
	for _, e := range ents {
		if !e.Type().IsRegular() || !isOutput(e.Name()) {
			continue
		}
		listed[e.Name()] = true
		p.mu.Lock()
		ph := p.files[e.Name()]
		p.mu.Unlock()
		if ph == nil {
			f, err := os.Open(filepath.Join(p.dir, e.Name()))
			if err != nil {
				continue
			}
			ph = &partialHash{f: f, h: sha256.New()}
			p.mu.Lock()
			p.files[e.Name()] = ph
			p.mu.Unlock()
			grew = true
		}
		if ph.bad {
			continue
		}
		before := ph.n
		more := ph.advance(buf, p.stop)
		grew = grew || ph.n > before
		if !more {
			return grew
		}
	}
	p.mu.Lock()
	for name, ph := range p.files {
		if !listed[name] {
			ph.f.Close()
			delete(p.files, name)
		}
	}
	p.mu.Unlock()
	return grew
}

// advance hashes f from n to its current end (false: stop was closed).
func (ph *partialHash) advance(buf []byte, stop <-chan struct{}) bool {
	if fi, err := ph.f.Stat(); err != nil || fi.Size() < ph.n {
		ph.bad = true // it shrank: hash it whole at the end
		return true
	}
	for {
		select {
		case <-stop:
			return false
		default:
		}
		k, err := ph.f.Read(buf)
		ph.h.Write(buf[:k])
		ph.n += int64(k)
		ph.seen.Store(ph.n)
		if ph.n-ph.queued >= writebackEvery {
			startWriteback(ph.f, ph.queued, ph.n-ph.queued)
			ph.queued = ph.n
		}
		if err != nil || k == 0 {
			return true // io.EOF: wait for more; another error: the final pass sees it
		}
	}
}

// progress is how many bytes of the output file name have been hashed.
func (p *Prehasher) progress(name string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ph := p.files[name]; ph != nil {
		return ph.seen.Load()
	}
	return 0
}

// halt stops the loop and waits for it.
func (p *Prehasher) halt() {
	p.stopOnce.Do(func() {
		close(p.stop)
		if p.first.Stop() { // the loop never started
			close(p.done)
		}
	})
	<-p.done
}

// take hands over the state of the file at path (nil if not followed). The
// loop is stopped first: the task has ended when its outputs are stored.
func (p *Prehasher) take(path string) *partialHash {
	if filepath.Dir(path) != filepath.Clean(p.dir) {
		return nil
	}
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	name := filepath.Base(path)
	ph := p.files[name]
	delete(p.files, name)
	return ph
}

// Close stops following and releases the files not taken.
func (p *Prehasher) Close() {
	if p == nil {
		return
	}
	p.closeOnce.Do(func() {
		p.halt()
		p.mu.Lock()
		defer p.mu.Unlock()
		for name, ph := range p.files {
			ph.f.Close()
			delete(p.files, name)
		}
	})
}

type prehashKey struct{}

// WithPrehasher makes PutFile (and PutFile of an S3 store's cache) use what
// p has hashed of the files it stores.
func WithPrehasher(ctx context.Context, p *Prehasher) context.Context {
	if p == nil {
		return ctx
	}
	return context.WithValue(ctx, prehashKey{}, p)
}

// errNotFollowed: the partial hash cannot be used (hash the file whole).
var errNotFollowed = errors.New("file not followed")

// finish completes the hash of path from where the Prehasher stopped and
// makes the file durable. errNotFollowed: path is not the file followed or
// its size is not what was hashed.
func (ph *partialHash) finish(ctx context.Context, path string) (Artifact, error) {
	defer ph.f.Close()
	if ph.bad {
		return Artifact{}, errNotFollowed
	}
	h := &hashingReader{ctx: ctx, r: ph.f, h: ph.h, n: ph.n}
	if err := drain(h); err != nil {
		return Artifact{}, err
	}
	fi, err := ph.f.Stat()
	if err != nil {
		return Artifact{}, err
	}
	pi, err := os.Stat(path)
	if err != nil {
		return Artifact{}, err
	}
	if !os.SameFile(fi, pi) || fi.Size() != h.n {
		return Artifact{}, errNotFollowed
	}
	if err := ph.f.Sync(); err != nil {
		return Artifact{}, err
	}
	return h.artifact(), nil
}

// drain reads r to its end in 1 MiB reads (io.Copy to io.Discard would
// read 8 KiB at a time: 131,072 reads for a GiB).
func drain(r io.Reader) error {
	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	_, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, *bp)
	return err
}
