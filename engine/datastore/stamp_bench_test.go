//go:build linux

package datastore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLocalFile: what verifying a blob file costs the engine when it
// writes a task spec or answers GetTask, against the stat LocalFile made
// before stamps (Has).
//
//	go test -run '^$' -bench LocalFile ./engine/datastore/
//
// (The 64 MiB case runs once per iteration: leave -benchtime as it is.)
func BenchmarkLocalFile(b *testing.B) {
	l := NewLocal(filepath.Join(b.TempDir(), ".metaflow"))
	small, err := l.Put(bg, "F", bytes.NewReader(make([]byte, 9015)))
	if err != nil {
		b.Fatal(err)
	}
	big, err := l.Put(bg, "F", bytes.NewReader(bytes.Repeat([]byte("0123456789abcdef"), 4<<20)))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("stat only (before stamps)", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, ok, err := l.Has(bg, "F", small.SHA); err != nil || !ok {
				b.Fatal(err)
			}
		}
	})
	b.Run("stamped, in memory", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := l.LocalFile(bg, "F", small.SHA); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stamped, sidecar (a new engine process)", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			forgetStamps()
			if _, err := l.LocalFile(bg, "F", small.SHA); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unstamped 64 MiB, hashed (once per copy)", func(b *testing.B) {
		b.SetBytes(big.Size)
		for i := 0; i < b.N; i++ {
			forgetStamps()
			os.Remove(l.path(BlobStamp("F", big.SHA)))
			if _, err := l.LocalFile(bg, "F", big.SHA); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PutFile of 9 KB, its stamp included", func(b *testing.B) {
		content := make([]byte, 9015)
		for i := 0; i < b.N; i++ {
			content[0], content[1] = byte(i), byte(i>>8)
			dir, _ := l.Staging(bg, "F")
			p := filepath.Join(dir, "out.mpk")
			if err := os.WriteFile(p, content, 0o644); err != nil {
				b.Fatal(err)
			}
			if _, err := l.PutFile(bg, "F", p); err != nil {
				b.Fatal(err)
			}
		}
	})
	fi, err := os.Stat(l.path(Blob("F", small.SHA)))
	if err != nil {
		b.Fatal(err)
	}
	st, _ := StampOf(fi)
	b.Run("stamp of a new blob written", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			os.Remove(l.path(BlobStamp("F", small.SHA)))
			b.StartTimer()
			l.writeStamp("F", small.SHA, st)
		}
	})
	b.Run("stamp replaced (after a rehash)", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			l.writeStamp("F", small.SHA, st)
		}
	})
}
