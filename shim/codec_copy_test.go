package shim

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The R package carries a committed copy of the task runtime's msgpack codec
// (so it builds and checks on its own); the two must never drift apart.
func TestRPackageCodecIsTheRuntimeCodec(t *testing.T) {
	runtime, err := runtimeFiles.ReadFile("runtime/msgpack.R")
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join("..", "rpkg", "R", "msgpack.R")
	pkg, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatalf("read the R package's copy: %v", err)
	}
	if !bytes.Equal(runtime, pkg) {
		t.Fatalf("%s differs from shim/runtime/msgpack.R: copy it (cp shim/runtime/msgpack.R rpkg/R/msgpack.R)", copyPath)
	}
}
