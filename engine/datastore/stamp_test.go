//go:build linux

package datastore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// forgetStamps empties the memory cache, as a new engine process starts.
func forgetStamps() {
	stamps.Lock()
	stamps.m = map[string]Stamp{}
	stamps.Unlock()
}

// checkFile calls LocalFile and reports how many files it hashed.
func checkFile(t *testing.T, l *Local, sha string) (BlobFile, int64, error) {
	t.Helper()
	before := rehashes.Load()
	f, err := l.LocalFile(bg, "F", sha)
	return f, rehashes.Load() - before, err
}

// flipByte changes one byte of a file in place, through the file (size,
// name and inode unchanged), as bit rot seen by the filesystem or a stray
// write would.
func flipByte(t *testing.T, p string, at int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func statOf(t *testing.T, p string) Stamp {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := StampOf(fi)
	if !ok {
		t.Fatal("no stamp from stat on linux")
	}
	return st
}

// sidecarsForAll gives every blob a sidecar for the test (small blobs
// normally have their stamp in memory only), so small contents stand for
// any.
func sidecarsForAll(t *testing.T) {
	old := sidecarMinSize
	sidecarMinSize = 0
	t.Cleanup(func() { sidecarMinSize = old })
}

func TestStampsVerifyBlobFilesByStat(t *testing.T) {
	sidecarsForAll(t)
	content := []byte("the content that was hashed")
	// Each case gets a blob just put (stamped), breaks something, and says
	// how LocalFile must answer.
	cases := []struct {
		name    string
		breakIt func(t *testing.T, l *Local, sha string)
		forget  bool // a new engine process: no stamps in memory
		hashes  int64
		corrupt bool
	}{
		{"fresh: stamped when put, nothing hashed", nil, false, 0, false},
		{"fresh, new process: the sidecar answers", nil, true, 0, false},
		{"a byte flipped through the file", func(t *testing.T, l *Local, sha string) {
			flipByte(t, l.path(Blob("F", sha)), 3)
		}, false, 1, true},
		{"a byte flipped, new process", func(t *testing.T, l *Local, sha string) {
			flipByte(t, l.path(Blob("F", sha)), 3)
		}, true, 1, true},
		{"a byte flipped and flipped back: rehashed, fine", func(t *testing.T, l *Local, sha string) {
			flipByte(t, l.path(Blob("F", sha)), 3)
			flipByte(t, l.path(Blob("F", sha)), 3)
		}, false, 1, false},
		{"truncated", func(t *testing.T, l *Local, sha string) {
			if err := os.Truncate(l.path(Blob("F", sha)), 4); err != nil {
				t.Fatal(err)
			}
		}, true, 1, true},
		{"replaced by another file of the same size", func(t *testing.T, l *Local, sha string) {
			p := l.path(Blob("F", sha))
			writeFile(t, p+".new", bytes.ToUpper(content))
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}, false, 1, true},
		{"missing sidecar: rehashed once, fine", func(t *testing.T, l *Local, sha string) {
			if err := os.Remove(l.path(BlobStamp("F", sha))); err != nil {
				t.Fatal(err)
			}
		}, true, 1, false},
		{"garbage sidecar: rehashed, fine", func(t *testing.T, l *Local, sha string) {
			writeFile(t, l.path(BlobStamp("F", sha)), []byte("{not json"))
		}, true, 1, false},
		{"forged sidecar (other times): rehashed, fine", func(t *testing.T, l *Local, sha string) {
			st := statOf(t, l.path(Blob("F", sha)))
			st.CtimeNs -= 1e9
			b, _ := json.Marshal(stampFile{SHA: sha, Stamp: st})
			writeFile(t, l.path(BlobStamp("F", sha)), b)
		}, true, 1, false},
		{"forged sidecar of another blob: rehashed, fine", func(t *testing.T, l *Local, sha string) {
			b, _ := json.Marshal(stampFile{SHA: strings.Repeat("0", 64), Stamp: statOf(t, l.path(Blob("F", sha)))})
			writeFile(t, l.path(BlobStamp("F", sha)), b)
		}, true, 1, false},
		{"a byte flipped and the old sidecar kept: detected", func(t *testing.T, l *Local, sha string) {
			flipByte(t, l.path(Blob("F", sha)), 0)
		}, true, 1, true},
		{"chmod (ctime changes, content does not): rehashed, fine", func(t *testing.T, l *Local, sha string) {
			if err := os.Chmod(l.path(Blob("F", sha)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forgetStamps()
			l := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
			a, err := l.PutFile(bg, "F", stageFile(t, l, content))
			if err != nil {
				t.Fatal(err)
			}
			if c.breakIt != nil {
				c.breakIt(t, l, a.SHA)
			}
			if c.forget {
				forgetStamps()
			}
			f, n, err := checkFile(t, l, a.SHA)
			if n != c.hashes {
				t.Errorf("LocalFile hashed %d file(s), want %d", n, c.hashes)
			}
			if c.corrupt {
				wantKind(t, "LocalFile", err, errs.ErrCorrupt, a.SHA, "F", "corrupt")
				if f != (BlobFile{}) {
					t.Errorf("a corrupt blob gave a file: %+v", f)
				}
				// Still corrupt the next time (no stamp was written for it).
				if _, n, err := checkFile(t, l, a.SHA); !errors.Is(err, errs.ErrCorrupt) || n != 1 {
					t.Errorf("second check: %v after %d hash(es); want ErrCorrupt after 1", err, n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Path != l.path(Blob("F", a.SHA)) || f.Stamp != statOf(t, f.Path) {
				t.Errorf("LocalFile = %+v; want the blob's file with its current stat %+v", f, statOf(t, f.Path))
			}
			// Verified now: the next check, even by a new process, hashes nothing.
			forgetStamps()
			if _, n, err := checkFile(t, l, a.SHA); err != nil || n != 0 {
				t.Errorf("check after verifying: %v after %d hash(es); want none", err, n)
			}
		})
	}
}

func TestStampedByEveryPut(t *testing.T) {
	sidecarsForAll(t)
	l := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	puts := map[string]func() (Artifact, error){
		"Put":     func() (Artifact, error) { return l.Put(bg, "F", strings.NewReader("by Put")) },
		"PutFile": func() (Artifact, error) { return l.PutFile(bg, "F", stageFile(t, l, []byte("by PutFile"))) },
		"PutSHA": func() (Artifact, error) {
			sum := sha256.Sum256([]byte("by PutSHA"))
			return l.PutSHA(bg, "F", hex.EncodeToString(sum[:]), strings.NewReader("by PutSHA"))
		},
	}
	for name, put := range puts {
		forgetStamps()
		a, err := put()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		forgetStamps() // the sidecar alone
		if _, n, err := checkFile(t, l, a.SHA); err != nil || n != 0 {
			t.Errorf("%s: LocalFile after it: %v after %d hash(es); want it stamped", name, err, n)
		}
	}
}

func TestPutAgainRepairsACorruptBlob(t *testing.T) {
	forgetStamps()
	l := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	content := []byte("made twice")
	a, err := l.PutFile(bg, "F", stageFile(t, l, content))
	if err != nil {
		t.Fatal(err)
	}
	p := l.path(Blob("F", a.SHA))
	flipByte(t, p, 0)
	// The same artifact made again (a resumed step): the verified copy
	// replaces the corrupt one.
	if _, err := l.PutFile(bg, "F", stageFile(t, l, content)); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, p); !bytes.Equal(got, content) {
		t.Fatalf("blob after putting it again = %q, want %q", got, content)
	}
	if _, n, err := checkFile(t, l, a.SHA); err != nil || n != 0 {
		t.Errorf("LocalFile after the repair: %v after %d hash(es); want it stamped", err, n)
	}
	// A verified blob is kept: the new copy is dropped, nothing renamed.
	before := statOf(t, p)
	staged := stageFile(t, l, content)
	if _, err := l.PutFile(bg, "F", staged); err != nil {
		t.Fatal(err)
	}
	if statOf(t, p) != before || exists(staged) {
		t.Error("putting a verified blob again replaced it or left the staged file")
	}
}

func TestCopiedDatastoreIsRehashedOnce(t *testing.T) {
	forgetStamps()
	src := filepath.Join(t.TempDir(), ".metaflow")
	l := NewLocal(src)
	a, err := l.Put(bg, "F", strings.NewReader("copied with cp -r"))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v: %s", err, out)
	}
	c := NewLocal(dst)
	for i, want := range []int64{1, 0} {
		if _, n, err := checkFile(t, c, a.SHA); err != nil || n != want {
			t.Errorf("read %d of the copy: %v after %d hash(es); want %d", i+1, err, n, want)
		}
	}
}

func TestLocalCopyGivesAStampOnlyWhenVerified(t *testing.T) {
	forgetStamps()
	l := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	a, err := l.Put(bg, "F", strings.NewReader("listed"))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := LocalCopy(l, "F", a.SHA); !ok || f.Stamp != statOf(t, f.Path) {
		t.Errorf("LocalCopy of a stamped blob = %+v, %v; want its stamp", f, ok)
	}
	flipByte(t, l.path(Blob("F", a.SHA)), 0)
	if f, ok := LocalCopy(l, "F", a.SHA); !ok || !f.Stamp.IsZero() {
		t.Errorf("LocalCopy of a changed blob = %+v, %v; want its path without a stamp", f, ok)
	}
}

func TestStampSecondsMatchFileInfo(t *testing.T) {
	// R's file.info() gives sec + 1e-9 * nsec as a double; the stamp's
	// seconds must be within the runtime's 1e-6 s tolerance of it and tell
	// apart times 2 µs apart.
	for _, ns := range []int64{0, 1796065177611828069, 1796065177999999999, 4102444800000000001} {
		want := float64(ns/1e9) + 1e-9*float64(ns%1e9)
		if got := nsToSeconds(ns); got-want > 1e-6 || want-got > 1e-6 {
			t.Errorf("nsToSeconds(%d) = %.9f, want %.9f", ns, got, want)
		}
		if nsToSeconds(ns+2000)-nsToSeconds(ns) < 1e-6 {
			t.Errorf("times 2 µs apart after %d are within the tolerance", ns)
		}
	}
}

func TestUnwritableSidecarsKeepStampsInMemory(t *testing.T) {
	forgetStamps()
	l := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	a, err := l.Put(bg, "F", strings.NewReader("no sidecar can be written"))
	if err != nil {
		t.Fatal(err)
	}
	// The sidecar's folder cannot be made (a file is in its way; as a
	// read-only datastore, also for root).
	dir := filepath.Dir(l.path(BlobStamp("F", a.SHA)))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, []byte("in the way"))
	forgetStamps()
	for i, want := range []int64{1, 0} {
		if _, n, err := checkFile(t, l, a.SHA); err != nil || n != want {
			t.Errorf("read %d: %v after %d hash(es); want %d", i+1, err, n, want)
		}
	}
}

func TestStampCacheIsBounded(t *testing.T) {
	forgetStamps()
	defer forgetStamps()
	defer func(n int) { stampCacheMax = n }(stampCacheMax)
	stampCacheMax = 100
	for i := 0; i < 1000; i++ {
		cacheStamp(strconv.Itoa(i), Stamp{Size: int64(i)})
	}
	stamps.Lock()
	n := len(stamps.m)
	stamps.Unlock()
	if n > stampCacheMax {
		t.Errorf("the stamp cache holds %d entries, over its bound %d", n, stampCacheMax)
	}
}

func TestS3CacheCopiesAreStampedAndACorruptOneIsFetchedAgain(t *testing.T) {
	a, b := machines(t)
	content := []byte("the datastore of record holds this")
	art, err := a.Put(bg, "F", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	forgetStamps()
	before := rehashes.Load()
	f, err := b.LocalFile(bg, "F", art.SHA) // downloaded, checked, stamped
	if err != nil || f.Stamp != statOf(t, f.Path) {
		t.Fatalf("LocalFile that downloads = %+v, %v; want the cached file, stamped", f, err)
	}
	if n := rehashes.Load() - before; n != 0 {
		t.Errorf("a download was hashed again %d time(s) after its check", n)
	}
	flipByte(t, f.Path, 2)
	f2, err := b.LocalFile(bg, "F", art.SHA)
	if err != nil {
		t.Fatalf("LocalFile of a corrupt cached copy: %v; want a fresh download", err)
	}
	if got := mustRead(t, f2.Path); !bytes.Equal(got, content) || f2.Stamp != statOf(t, f2.Path) {
		t.Errorf("after the fresh download: %q, stamp %+v", got, f2.Stamp)
	}
}

// A small blob has no sidecar: its stamp is in memory, and a new engine
// process hashes it once (cheaper than making a file for it at every put);
// a big one has its sidecar.
func TestOnlyBigBlobsHaveSidecars(t *testing.T) {
	for _, c := range []struct {
		name    string
		size    int
		sidecar bool
	}{
		{"small", int(sidecarMinSize) - 1, false},
		{"big", int(sidecarMinSize), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			forgetStamps()
			l := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
			a, err := l.PutFile(bg, "F", stageFile(t, l, bytes.Repeat([]byte("x"), c.size)))
			if err != nil {
				t.Fatal(err)
			}
			if _, n, err := checkFile(t, l, a.SHA); err != nil || n != 0 {
				t.Fatalf("same process: %v after %d hash(es); want none", err, n)
			}
			_, err = os.Stat(l.path(BlobStamp("F", a.SHA)))
			if got := err == nil; got != c.sidecar {
				t.Fatalf("sidecar written: %v, want %v", got, c.sidecar)
			}
			forgetStamps()
			want := int64(1)
			if c.sidecar {
				want = 0
			}
			for i := 0; i < 2; i++ { // a new process hashes a small one once
				if _, n, err := checkFile(t, l, a.SHA); err != nil || n != want {
					t.Fatalf("new process, check %d: %v after %d hash(es); want %d", i+1, err, n, want)
				}
				want = 0
			}
		})
	}
}
