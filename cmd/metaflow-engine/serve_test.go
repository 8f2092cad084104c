package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "0123456789abcdef0123"
	cases := []struct {
		name, file, env, want, err string
	}{
		{"private file", write("ok", good+"\n", 0o600), "", good, ""},
		{"readable by the group", write("group", good, 0o640), "", "", "can be read by others (mode -rw-r-----): chmod 600"},
		{"readable by all", write("world", good, 0o644), "", "", "can be read by others"},
		{"short token", write("short", "abc", 0o600), "", "", "at least 16 characters"},
		{"missing file", filepath.Join(dir, "nope"), "", "", "read token file"},
		{"environment", "", good, good, ""},
		{"nothing", "", "", "", "at least 16 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("METAFLOW_ENGINE_TOKEN", tc.env)
			got, err := readToken(tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("readToken(%q) = %q, %v; want error with %q", tc.file, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readToken(%q) = %q, %v; want %q", tc.file, got, err, tc.want)
			}
		})
	}
}

func TestHeartbeatSecondsFromTheEnvironment(t *testing.T) {
	old := scheduler.HeartbeatInterval
	t.Cleanup(func() { scheduler.HeartbeatInterval = old })
	cases := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"", old, true},
		{"2", 2 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"0", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
	}
	for _, tc := range cases {
		scheduler.HeartbeatInterval = old
		err := setHeartbeat(tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("setHeartbeat(%q) error %v, want ok %v", tc.value, err, tc.ok)
			continue
		}
		if tc.ok && scheduler.HeartbeatInterval != tc.want {
			t.Errorf("setHeartbeat(%q) set %v, want %v", tc.value, scheduler.HeartbeatInterval, tc.want)
		}
		if !tc.ok && !strings.Contains(err.Error(), "METAFLOW_ENGINE_HEARTBEAT_SECONDS") {
			t.Errorf("setHeartbeat(%q) error %q does not name the variable", tc.value, err)
		}
	}
}
