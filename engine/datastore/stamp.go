package datastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// Verified stamps, as git's index keeps them: tasks and the R client read a
// blob's file by path, and hashing it there (in R) would cost more than the
// read. So whenever this package has hashed a local blob file (PutFile, Put,
// PutSHA, a download into an S3 cache, or a check by LocalFile) it records
// the file's stat as it is right after: size, mtime and ctime in
// nanoseconds, inode and device. Any write to the file, a truncation, a
// replacement or a copy changes its ctime (which no user can set) or its
// inode, so "the file's stat equals its stamp" means "these are the bytes
// that were hashed". LocalFile checks the stamp and hashes the file again
// when it differs or is missing (then restamps it, or fails with
// ErrCorrupt); it hands the stamp to the reader, which compares the file's
// stat with it right before (and after) it reads.
//
// Stamps live beside the blobs in a sidecar (BlobStamp), written atomically
// but not synced (a lost or torn one only costs a rehash), and in a
// process-wide memory cache, so a task spec costs one stat per blob. Blobs
// under sidecarMinSize have their stamp in memory only. A
// stamp is not a defence against someone who can write the datastore: they
// could as well write another blob and point an artifact index at it.

// Stamp is a blob file's stat when its content was last verified.
type Stamp struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	Ino     uint64 `json:"ino"`
	Dev     uint64 `json:"dev"`
}

// IsZero reports whether s is no stamp (this platform's stat has none).
func (s Stamp) IsZero() bool { return s == Stamp{} }

// MtimeSeconds and CtimeSeconds are the times as R's file.info() gives
// them: seconds since the epoch (a double: within 1e-6 s of the stat's).
func (s Stamp) MtimeSeconds() float64 { return nsToSeconds(s.MtimeNs) }

// CtimeSeconds is the ctime in seconds (see MtimeSeconds).
func (s Stamp) CtimeSeconds() float64 { return nsToSeconds(s.CtimeNs) }

func nsToSeconds(ns int64) float64 {
	return float64(ns/1e9) + float64(ns%1e9)/1e9
}

// BlobFile is a blob's file on this machine with the stamp its content was
// verified under: a reader compares the file's stat with Stamp before it
// reads (a zero Stamp: this platform has none, and the reader cannot check).
type BlobFile struct {
	Path  string
	Stamp Stamp
}

// stampFile is a sidecar's content.
type stampFile struct {
	SHA string `json:"sha"`
	Stamp
}

// stamps caches the stamps this process has verified, by blob file path;
// an entry counts only while the file's stat equals it.
var stamps = struct {
	sync.Mutex
	m map[string]Stamp
}{m: map[string]Stamp{}}

// sidecarMinSize: smaller blobs get no sidecar. Making the file costs
// more (~0.1 ms on ext4, at every task that outputs the blob) than hashing
// the blob again costs a new engine process the first time it reads it.
var sidecarMinSize int64 = 64 << 10

// stampCacheMax bounds the cache (about 100 bytes an entry); past it the
// cache starts again from the sidecars.
var stampCacheMax = 1 << 17

func cacheStamp(path string, st Stamp) {
	stamps.Lock()
	defer stamps.Unlock()
	if len(stamps.m) >= stampCacheMax {
		stamps.m = map[string]Stamp{}
	}
	stamps.m[path] = st
}

func cachedStamp(path string) (Stamp, bool) {
	stamps.Lock()
	defer stamps.Unlock()
	st, ok := stamps.m[path]
	return st, ok
}

// rehashes counts the blob files verified by hashing them (not by their
// stamp): tests see what a check cost.
var rehashes atomic.Int64

// StampOf is a file's stamp from its stat (false where stat has no ctime
// and inode): for files the engine writes itself, as a foreach's element
// files.
func StampOf(fi fs.FileInfo) (Stamp, bool) { return statStamp(fi) }

func stampOf(fi fs.FileInfo) (Stamp, bool) { return statStamp(fi) }

// sameContent reports whether two stats of a file are of the same bytes
// across a rename, which changes the ctime but not the inode, size or mtime.
func sameContent(a, b Stamp) bool {
	return a.Size == b.Size && a.MtimeNs == b.MtimeNs && a.Ino == b.Ino && a.Dev == b.Dev
}

// stampPlaced stamps a blob file just renamed into place, when its stat
// from before it was hashed (pre) shows it was not written since.
func (l *Local) stampPlaced(flow, sha string, pre fs.FileInfo) {
	if pre == nil {
		return
	}
	before, ok := stampOf(pre)
	if !ok {
		return
	}
	fi, err := os.Stat(l.path(Blob(flow, sha)))
	if err != nil {
		return
	}
	if now, ok := stampOf(fi); ok && sameContent(before, now) {
		l.writeStamp(flow, sha, now)
	}
}

// writeStamp records st as the verified stamp of blob sha's file: in
// memory, and in its sidecar when the folder can be written (a read-only
// datastore keeps stamps in memory only).
func (l *Local) writeStamp(flow, sha string, st Stamp) {
	cacheStamp(l.path(Blob(flow, sha)), st)
	if st.Size < sidecarMinSize {
		return
	}
	b, err := json.Marshal(stampFile{SHA: sha, Stamp: st})
	if err != nil {
		return
	}
	dst := l.path(BlobStamp(flow, sha))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return
	}
	// A new sidecar is written in place (one small write: a reader sees it
	// whole or not at all, and a torn one after a crash only fails to
	// parse); one that exists is replaced by a rename.
	if f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err != nil || cerr != nil {
			os.Remove(dst)
		}
		return
	}
	tmp := dst + ".tmp-" + nonce()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
}

// stamped reports whether st, the current stat of blob sha's file, is the
// stamp it was verified under (memory first, then the sidecar).
func (l *Local) stamped(flow, sha string, st Stamp) bool {
	p := l.path(Blob(flow, sha))
	if c, ok := cachedStamp(p); ok && c == st {
		return true
	}
	if st.Size < sidecarMinSize {
		return false // small blobs get no sidecar (writeStamp): nothing to read
	}
	b, err := os.ReadFile(l.path(BlobStamp(flow, sha)))
	if err != nil {
		return false
	}
	var sf stampFile
	if json.Unmarshal(b, &sf) != nil || sf.SHA != sha || sf.Stamp != st {
		return false
	}
	cacheStamp(p, st)
	return true
}

// verifiedFile is blob sha's file, checked: its stat equals its stamp, or
// its content is hashed now and restamped. A missing blob is ErrNotFound;
// content that is not sha's is ErrCorrupt.
func (l *Local) verifiedFile(ctx context.Context, flow, sha string) (BlobFile, error) {
	if err := checkSHA(flow, sha); err != nil {
		return BlobFile{}, err
	}
	if err := ctx.Err(); err != nil {
		return BlobFile{}, fmt.Errorf("blob %s of flow %s: %w", sha, flow, err)
	}
	p := l.path(Blob(flow, sha))
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return BlobFile{}, errs.NotFound("blob %s of flow %s not found in %s: %w", sha, flow, l.Root, fs.ErrNotExist)
	}
	if err != nil {
		return BlobFile{}, fmt.Errorf("blob %s of flow %s: %w", sha, flow, err)
	}
	if st, ok := stampOf(fi); ok && l.stamped(flow, sha, st) {
		return BlobFile{Path: p, Stamp: st}, nil
	}
	st, err := l.rehash(ctx, flow, sha, p)
	if err != nil {
		return BlobFile{}, err
	}
	return BlobFile{Path: p, Stamp: st}, nil
}

// rehash hashes blob sha's file and, when it holds sha's content and did
// not change while it was read, stamps it.
func (l *Local) rehash(ctx context.Context, flow, sha, p string) (Stamp, error) {
	rehashes.Add(1)
	f, err := os.Open(p)
	if err != nil {
		return Stamp{}, fmt.Errorf("verify blob %s of flow %s: %w", sha, flow, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return Stamp{}, fmt.Errorf("verify blob %s of flow %s: %w", sha, flow, err)
	}
	h := newHashingReader(ctx, f)
	if _, err := io.Copy(io.Discard, h); err != nil {
		return Stamp{}, fmt.Errorf("verify blob %s of flow %s: %w", sha, flow, err)
	}
	if got := h.artifact().SHA; got != sha {
		return Stamp{}, errs.Corrupt("blob %s of flow %s in %s is corrupt: its content hashes to %s", sha, flow, l.Root, got)
	}
	after, err := f.Stat()
	if err != nil {
		return Stamp{}, fmt.Errorf("verify blob %s of flow %s: %w", sha, flow, err)
	}
	st0, ok0 := stampOf(before)
	st, ok := stampOf(after)
	if !ok0 || !ok {
		return Stamp{}, nil // no stamps here: readers cannot check
	}
	if st0 != st {
		return Stamp{}, errs.Corrupt("blob %s of flow %s in %s changed while it was being verified: blobs are never written after they are stored", sha, flow, l.Root)
	}
	l.writeStamp(flow, sha, st)
	return st, nil
}
