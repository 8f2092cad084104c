package rpc

import (
	"fmt"
	"os"
	"testing"

	"github.com/metaflow-r/metaflow/internal/mototest"
)

// Tests never see the developer's AWS or Metaflow settings (a config file
// choosing an S3 datastore would send test runs to a real bucket).
func TestMain(m *testing.M) {
	cleanup, err := mototest.Isolate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolate the tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}
