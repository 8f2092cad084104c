// Package testfs gives tests real file systems that fail writes: a small
// tmpfs to fill (ENOSPC) and to remount read-only (EROFS). Mounting needs
// root; elsewhere the tests that need it are skipped, saying why.
package testfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tmpfs mounts a tmpfs of size bytes on a fresh folder and returns it; it
// is unmounted when the test ends, also when it fails.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a tmpfs (a full or read-only datastore) needs root")
	}
	dir := t.TempDir() // removed after the unmount below (cleanups run last first)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the test tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// ReadOnly remounts the file system at dir read-only (ro) or read-write
// again. A remount read-only waits (at most 5 s) while a file is open for
// writing on it (EBUSY).
func ReadOnly(dir string, ro bool) error {
	flags := uintptr(unix.MS_REMOUNT)
	if ro {
		flags |= unix.MS_RDONLY
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Mount("none", dir, "", flags, "")
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("remount %s (read-only %v): %w", dir, ro, err)
			}
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Fill writes a file in dir until the file system has no space left, and
// returns its path (remove it to free the space).
func Fill(dir string) (string, error) {
	path := filepath.Join(dir, ".filler")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path, nil
			}
			return "", fmt.Errorf("fill %s: %w", dir, err)
		}
	}
}
