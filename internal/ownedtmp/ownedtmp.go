// Package ownedtmp makes temp folders named after the process that owns
// them (<prefix><pid>-<tag><random>), and removes those whose owner is gone:
// an engine killed with kill -9, or whose machine rebooted, leaves its
// folders behind, and the next engine to start cleans them up.
package ownedtmp

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Make creates a fresh folder in the system's temp folder, named
// <prefix><pid>-<tag><random> after this process.
func Make(prefix, tag string) (string, error) {
	dir, err := os.MkdirTemp("", prefix+strconv.Itoa(os.Getpid())+"-"+tag)
	if err != nil {
		return "", fmt.Errorf("create temp folder %s*: %w", prefix, err)
	}
	return dir, nil
}

// Owner returns the pid of the process that made the folder called name
// with Make(prefix, ...).
func Owner(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != p {
		return 0, false
	}
	return pid, true
}

// Alive reports whether process pid exists (one of another user's too)
// and is not a zombie: a killed process nobody reaped yet (where PID 1 is
// no init) is gone. Tests may replace it.
var Alive = func(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return !zombie(pid)
}

// zombie reports whether /proc says pid is a zombie (false where there is
// no /proc: the process is then taken for alive).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// Clean removes the folders of dir (the system's temp folder if "") that
// Make(prefix, ...) made for a process that no longer exists, and returns
// their paths. It keeps the folders of live processes (this one's
// included), folders of other users and anything not named by Make (as
// folders of older engines, which carry no owner). Errors are reported
// after trying every folder.
func Clean(dir, prefix string) ([]string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		pid, ok := Owner(e.Name(), prefix)
		if !ok || !e.IsDir() || pid == os.Getpid() || Alive(pid) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone already
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, fmt.Errorf("remove %s (its engine, pid %d, is gone): %w", path, pid, err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}
