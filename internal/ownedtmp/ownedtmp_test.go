package ownedtmp

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCleanRemovesOnlyFoldersOfGoneOwners(t *testing.T) {
	const live = 4242
	old := Alive
	Alive = func(pid int) bool { return pid == live }
	t.Cleanup(func() { Alive = old })
	me := strconv.Itoa(os.Getpid())
	cases := []struct {
		name    string
		dir     bool
		removed bool
	}{
		{"metaflow-runtime-4242-111", true, false},       // live owner kept
		{"metaflow-runtime-4343-222", true, true},        // dead owner removed
		{"metaflow-runtime-4343-F-3-333", true, true},    // with a tag
		{"metaflow-runtime-" + me + "-444", true, false}, // this process's own
		{"metaflow-runtime-123456789", true, false},      // an older engine's: no owner
		{"metaflow-runtime-x-555", true, false},          // not an owner
		{"metaflow-runtime-04343-6", true, false},        // not a canonical pid
		{"metaflow-runtime-4343-777", false, false},      // a file
		{"other-4343-888", true, false},                  // another prefix
	}
	dir := t.TempDir()
	for _, tc := range cases {
		p := filepath.Join(dir, tc.name)
		var err error
		if tc.dir {
			err = os.MkdirAll(filepath.Join(p, "sub"), 0o755)
		} else {
			err = os.WriteFile(p, []byte("x"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	removed, err := Clean(dir, "metaflow-runtime-")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, tc := range cases {
		_, statErr := os.Stat(filepath.Join(dir, tc.name))
		if gone := os.IsNotExist(statErr); gone != tc.removed {
			t.Errorf("%s: removed %v, want %v", tc.name, gone, tc.removed)
		}
		if tc.removed {
			want = append(want, filepath.Join(dir, tc.name))
		}
	}
	sort.Strings(removed)
	sort.Strings(want)
	if strings.Join(removed, ",") != strings.Join(want, ",") {
		t.Fatalf("Clean reported %v, want %v", removed, want)
	}
}

func TestMakeNamesItsOwner(t *testing.T) {
	dir, err := Make("metaflow-test-", "F-1-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pid, ok := Owner(filepath.Base(dir), "metaflow-test-")
	if !ok || pid != os.Getpid() || !strings.HasPrefix(filepath.Base(dir), "metaflow-test-"+strconv.Itoa(pid)+"-F-1-") {
		t.Fatalf("Make made %s (owner %d, %v)", dir, pid, ok)
	}
	// Its owner is alive: Clean keeps it, as that of any live process.
	if removed, err := Clean(filepath.Dir(dir), "metaflow-test-"); err != nil || len(removed) != 0 {
		t.Fatalf("Clean removed %v (%v)", removed, err)
	}
	if !Alive(os.Getpid()) || Alive(1<<22+1) {
		t.Fatal("Alive does not tell live from gone processes")
	}
}

func TestAZombieIsGone(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Wait() })
	// Not waited for: once it exits it is a zombie until Wait reaps it.
	deadline := time.Now().Add(5 * time.Second)
	for !zombie(pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if Alive(pid) {
		t.Fatalf("the exited, unreaped process %d is taken for alive", pid)
	}
}
