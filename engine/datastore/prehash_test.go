package datastore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// waitHashed waits until p has hashed want bytes of name (the loop runs
// every PrehashInterval); it fails the test after 10 s.
func waitHashed(t *testing.T, p *Prehasher, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.progress(name) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the prehasher hashed %d of %d bytes of %s", p.progress(name), want, name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// PutFile of a file a Prehasher followed while it grew stores the same blob
// as hashing it whole, whatever happened to the file after it was followed.
func TestPutFileWithPrehasher(t *testing.T) {
	first := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	tail := []byte("the end")
	other := bytes.Repeat([]byte("z"), len(first)+5)
	cases := []struct {
		name string
		// after runs once the prehasher has hashed first; it returns the
		// content the file then holds.
		after func(t *testing.T, path string) []byte
	}{
		{"grown after it was followed", func(t *testing.T, path string) []byte {
			appendFile(t, path, tail)
			return append(append([]byte{}, first...), tail...)
		}},
		{"unchanged", func(t *testing.T, path string) []byte { return first }},
		{"replaced by another file", func(t *testing.T, path string) []byte {
			tmp := path + ".new"
			writeFile(t, tmp, other)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
			return other
		}},
		{"truncated", func(t *testing.T, path string) []byte {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
			return first[:100]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := NewLocal(filepath.Join(dir, ".metaflow"))
			stage := filepath.Join(dir, "stage")
			if err := os.Mkdir(stage, 0o755); err != nil {
				t.Fatal(err)
			}
			p := WatchStaging(stage)
			defer p.Close()
			path := filepath.Join(stage, "x.mpk")
			writeFile(t, path, first[:1000])
			waitHashed(t, p, "x.mpk", 1000)
			appendFile(t, path, first[1000:])
			waitHashed(t, p, "x.mpk", int64(len(first)))
			want := tc.after(t, path)
			a, err := store.PutFile(WithPrehasher(bg, p), "F", path)
			if err != nil {
				t.Fatal(err)
			}
			if a.SHA != shaOf(want) || a.Size != int64(len(want)) {
				t.Fatalf("PutFile = %+v, want sha %s size %d", a, shaOf(want), len(want))
			}
			b, err := os.ReadFile(filepath.Join(store.Root, "F", "data", a.SHA[:2], a.SHA))
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("blob content differs (%v)", err)
			}
		})
	}
}

// Only the runtime's outputs are followed, and only in the folder watched.
func TestPrehasherFollowsOutputsOnly(t *testing.T) {
	dir := t.TempDir()
	p := WatchStaging(dir)
	defer p.Close()
	for _, name := range []string{"_result.mpk", ".tmp.mpk", "notes.txt", "a.mpk"} {
		writeFile(t, filepath.Join(dir, name), []byte("content"))
	}
	waitHashed(t, p, "a.mpk", 7)
	for _, name := range []string{"_result.mpk", ".tmp.mpk", "notes.txt"} {
		if n := p.progress(name); n != 0 {
			t.Errorf("%s: %d bytes hashed, want none", name, n)
		}
	}
	if ph := p.take(filepath.Join(t.TempDir(), "a.mpk")); ph != nil {
		t.Error("a file of another folder was handed over")
	}
	p.Close()
	p.Close() // idempotent
	if len(p.files) != 0 {
		t.Errorf("Close left %d files open", len(p.files))
	}
}

// An output the runtime removes (a partial file, on a full disk) is let go
// at the next scan: the prehasher holds no file whose name has gone, which
// would keep its space.
func TestPrehasherLetsGoOfRemovedOutputs(t *testing.T) {
	dir := t.TempDir()
	p := WatchStaging(dir)
	defer p.Close()
	path := filepath.Join(dir, "big.mpk")
	writeFile(t, path, []byte("partial"))
	waitHashed(t, p, "big.mpk", 7)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		_, held := p.files["big.mpk"]
		p.mu.Unlock()
		if !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prehasher still holds a removed output open")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// What was hashed while the file grew is handed over, and only the tail is
// read at the end.
func TestPrehasherHandsOverItsHash(t *testing.T) {
	dir := t.TempDir()
	p := WatchStaging(dir)
	defer p.Close()
	path := filepath.Join(dir, "a.mpk")
	body := bytes.Repeat([]byte("ab"), 1<<20)
	writeFile(t, path, body)
	waitHashed(t, p, "a.mpk", int64(len(body)))
	appendFile(t, path, []byte("tail"))
	ph := p.take(path)
	if ph == nil || ph.n != int64(len(body)) {
		t.Fatalf("handed over %+v, want %d bytes hashed", ph, len(body))
	}
	a, err := ph.finish(bg, path)
	want := append(body, "tail"...)
	if err != nil || a.SHA != shaOf(want) || a.Size != int64(len(want)) {
		t.Fatalf("finish = %+v, %v; want sha %s", a, err, shaOf(want))
	}
}

// BenchmarkPutFileAfterWrite times what PutFile adds once a task has
// written a 256 MiB output (in 1 MiB writes, as the R runtime does): hashed
// and synced whole at the end, or followed by a Prehasher while written.
// Files go to BENCH_DIR (default: the test's temp folder, on disk).
//
//	go test -run '^$' -bench PutFileAfterWrite -benchtime 3x ./engine/datastore/
func BenchmarkPutFileAfterWrite(b *testing.B) {
	const size = 256 << 20
	piece := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, (1<<20)/8)
	for _, follow := range []bool{false, true} {
		name := map[bool]string{false: "whole", true: "prehashed"}[follow]
		b.Run(name, func(b *testing.B) {
			base := os.Getenv("BENCH_DIR")
			if base == "" {
				base = b.TempDir()
			}
			dir, err := os.MkdirTemp(base, "putfile-bench-")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			store := NewLocal(filepath.Join(dir, ".metaflow"))
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				stage := filepath.Join(dir, "stage")
				if err := os.MkdirAll(stage, 0o755); err != nil {
					b.Fatal(err)
				}
				var p *Prehasher
				if follow {
					p = WatchStaging(stage)
				}
				path := filepath.Join(stage, "x.mpk")
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				for k := 0; k < size>>20; k++ {
					piece[0] = byte(i) // a new blob each round
					piece[1] = byte(k)
					if _, err := f.Write(piece); err != nil {
						b.Fatal(err)
					}
					time.Sleep(time.Millisecond) // R encodes as it writes: ~0.7 GB/s
				}
				f.Close()
				b.StartTimer()
				if _, err := store.PutFile(WithPrehasher(bg, p), "F", path); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				p.Close()
				os.RemoveAll(filepath.Join(store.Root, "F", "data"))
				b.StartTimer()
			}
		})
	}
}
