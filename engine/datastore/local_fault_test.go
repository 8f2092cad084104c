package datastore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/metaflow-r/metaflow/internal/testfs"
)

// leftovers lists the temp files of the store's writes under root.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), ".tmp-") || strings.HasPrefix(d.Name(), ".put-")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Every write of the local store on a full or read-only file system (a
// real tmpfs) fails with the OS's cause, leaves no temp file, and leaves
// the record it would replace as it was.
func TestLocalWritesOnAFullOrReadOnlyDiskNameTheCause(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		errno  syscall.Errno
		cause  string
		break_ func(t *testing.T, dir string) (repair func())
	}{
		{"full", syscall.ENOSPC, "no space left on device", func(t *testing.T, dir string) func() {
			filler, err := testfs.Fill(dir)
			if err != nil {
				t.Fatal(err)
			}
			return func() { os.Remove(filler) }
		}},
		{"read-only", syscall.EROFS, "read-only file system", func(t *testing.T, dir string) func() {
			if err := testfs.ReadOnly(dir, true); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := testfs.ReadOnly(dir, false); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := testfs.Tmpfs(t, 1<<20)
			l := NewLocal(filepath.Join(dir, ".metaflow"))
			run := &Run{Flow: "F", Status: StatusRunning}
			if err := l.NewRun(ctx, run); err != nil {
				t.Fatal(err)
			}
			task := &Task{Flow: "F", RunID: run.RunID, Step: "start", TaskID: "1", Status: StatusRunning}
			if err := l.PutTask(ctx, task); err != nil {
				t.Fatal(err)
			}
			staging, err := l.Staging(ctx, "F")
			if err != nil {
				t.Fatal(err)
			}
			staged := filepath.Join(staging, "x.mpk")
			if err := os.WriteFile(staged, bytes.Repeat([]byte("x"), 5000), 0o644); err != nil {
				t.Fatal(err)
			}
			repair := tc.break_(t, dir)

			ended := *run
			ended.Status = StatusFailed
			done := *task
			done.Status = StatusCompleted
			big := bytes.Repeat([]byte("y"), 300<<10)
			writes := []struct {
				what  string
				write func() error
			}{
				{"PutRun", func() error { return l.PutRun(ctx, &ended) }},
				{"NewRun", func() error { return l.NewRun(ctx, &Run{Flow: "F", Status: StatusRunning}) }},
				{"PutTask", func() error { return l.PutTask(ctx, &done) }},
				{"PutCode", func() error { return l.PutCode(ctx, "F", run.RunID, big) }},
				{"Put", func() error { _, err := l.Put(ctx, "F", bytes.NewReader(big)); return err }},
			}
			if tc.errno == syscall.EROFS { // renaming needs no space: only a read-only disk refuses it
				writes = append(writes, struct {
					what  string
					write func() error
				}{"PutFile", func() error { _, err := l.PutFile(ctx, "F", staged); return err }})
			}
			for _, w := range writes {
				err := w.write()
				if !errors.Is(err, tc.errno) || !strings.Contains(err.Error(), tc.cause) {
					t.Errorf("%s on a %s disk: %v, want an error wrapping %q", w.what, tc.name, err, tc.cause)
				}
			}
			if left := leftovers(t, dir); len(left) > 0 {
				t.Errorf("temp files left behind: %v", left)
			}
			if ids, err := l.ListRuns(ctx, "F"); err != nil || len(ids) != 1 {
				t.Errorf("runs after a failed NewRun: %v, %v; want only run %s", ids, err, run.RunID)
			}
			got, err := l.GetRun(ctx, "F", run.RunID)
			if err != nil || got.Status != StatusRunning {
				t.Errorf("the run's record changed: %+v, %v", got, err)
			}
			gotTask, err := l.GetTask(ctx, "F", run.RunID, "start", "1")
			if err != nil || gotTask.Status != StatusRunning {
				t.Errorf("the task's record changed: %+v, %v", gotTask, err)
			}
			repair()
			if err := l.PutRun(ctx, &ended); err != nil {
				t.Fatalf("once repaired: %v", err)
			}
		})
	}
}

// An I/O error (EIO) while a record is written: the error wraps it, no temp
// file is left, the old record stays. (A real EIO needs device-mapper,
// which this machine lacks; the store's write helpers take the same path
// for every errno.)
func TestWriteAtomicKeepsTheOldFileOnAnIOError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "_task.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	eio := &fs.PathError{Op: "write", Path: path, Err: syscall.EIO}
	err := writeAtomic(context.Background(), path, func(w io.Writer) error {
		if _, err := w.Write([]byte("half")); err != nil {
			return err
		}
		return eio
	})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("writeAtomic = %v, want it to wrap EIO", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("the old file changed: %q", b)
	}
	if left := leftovers(t, dir); len(left) > 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
	// A blob whose source fails mid-copy is not stored either.
	l := NewLocal(filepath.Join(dir, ".metaflow"))
	_, err = l.Put(context.Background(), "F", io.MultiReader(strings.NewReader("part"), errReader{eio}))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("Put = %v, want it to wrap EIO", err)
	}
	if left := leftovers(t, dir); len(left) > 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
