//go:build linux

package datastore

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPackageManifestRoundTrips(t *testing.T) {
	a, b := machines(t)
	local := NewLocal(filepath.Join(t.TempDir(), ".metaflow"))
	files := map[string]Artifact{
		"flow.R":     {SHA: strings.Repeat("a1", 32), Size: 120},
		"data/x.csv": {SHA: strings.Repeat("b2", 32), Size: 5 << 30},
		"empty.R":    {SHA: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Size: 0},
	}
	for _, tc := range []struct {
		name           string
		writer, reader Store
	}{{"local", local, local}, {"s3", a, b}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.writer.NewRun(bg, &Run{Flow: "F", Status: StatusRunning}); err != nil {
				t.Fatal(err)
			}
			if got, err := tc.reader.GetPackage(bg, "F", "1"); err != nil || got != nil {
				t.Fatalf("GetPackage before PutPackage = %v, %v; want none", got, err)
			}
			if got, err := tc.reader.GetPackage(bg, "F", "99"); err != nil || got != nil {
				t.Fatalf("GetPackage of a missing run = %v, %v; want none", got, err)
			}
			if err := tc.writer.PutPackage(bg, "F", "1", files); err != nil {
				t.Fatal(err)
			}
			got, err := tc.reader.GetPackage(bg, "F", "1")
			if err != nil || !reflect.DeepEqual(got, files) {
				t.Fatalf("GetPackage = %v, %v; want %v", got, err, files)
			}
			// The manifest is no step of the run.
			if steps, err := tc.reader.ListSteps(bg, "F", "1"); err != nil || len(steps) != 0 {
				t.Fatalf("ListSteps = %v, %v", steps, err)
			}
		})
	}
	// Local: written atomically (no temp file left), and a torn file is an error.
	ents, _ := os.ReadDir(filepath.Join(local.Root, "F", "1"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Fatalf("temp file left: %s", e.Name())
		}
	}
	os.WriteFile(filepath.Join(local.Root, "F", "1", "_package.json"), []byte(`{"flow.R": {"sha"`), 0o644)
	if _, err := local.GetPackage(bg, "F", "1"); err == nil || !strings.Contains(err.Error(), "code package of run F/1") {
		t.Fatalf("GetPackage of a torn manifest: %v", err)
	}
}
