package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
)

// `artifact` prints a value read through the datastore's checked reader: a
// blob whose content is not its address is an error, and nothing is printed.
func TestArtifactReadsCheckedBlobs(t *testing.T) {
	t.Setenv("METAFLOW_HOME", t.TempDir()) // no config file
	t.Setenv("METAFLOW_DEFAULT_DATASTORE", "local")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	value, err := os.ReadFile(filepath.Join("..", "..", "tests", "vectors", "character.mpk"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := store.Put(ctx, "F", bytes.NewReader(value))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.PutTask(ctx, &datastore.Task{Flow: "F", RunID: "1", Step: "start", TaskID: "1", Status: datastore.StatusCompleted,
		Artifacts: map[string]datastore.Artifact{"x": a}}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := artifactCmd()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append(args, "--datastore", root))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	good, err := run("F/1/start/1", "x")
	if err != nil || good == "" {
		t.Fatalf("artifact = %q, %v", good, err)
	}
	if list, err := run("F/1/start/1"); err != nil || !strings.Contains(list, a.SHA) {
		t.Fatalf("artifact list = %q, %v", list, err)
	}
	blob := filepath.Join(root, filepath.FromSlash(datastore.Blob("F", a.SHA)))
	for name, bad := range map[string][]byte{
		"a flipped byte": append(bytes.ToUpper(value[:len(value)-1:len(value)-1]), value[len(value)-1]),
		"truncated":      value[:len(value)/2],
	} {
		if err := os.WriteFile(blob, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run("F/1/start/1", "x")
		if !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), "artifact x of F/1/start/1") || !strings.Contains(err.Error(), a.SHA) {
			t.Errorf("%s: artifact = %v; want a corrupt blob error naming the artifact and its sha", name, err)
		}
		if out != "" {
			t.Errorf("%s: printed %q from a corrupt blob", name, out)
		}
	}
}
