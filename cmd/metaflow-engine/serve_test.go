package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
