package scheduler

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

// BenchmarkForeach5000 against BenchmarkForeach200: the engine's cost of a
// split must not grow with the fan-out (us/task alike).
func BenchmarkForeach5000(b *testing.B) { benchForeach(b, 5000) }

// benchForeach runs a foreach of n splits with an executor that does no
// work, and reports the engine's time per task (n splits, start, join, end).
func benchForeach(b *testing.B, n int) {
	g := foreachGraph(&testing.T{})
	for i := 0; i < b.N; i++ {
		ex := &fakeExec{steps: map[string]stepFunc{"start": splits(n)}, fast: true}
		store := datastore.NewLocal(filepath.Join(b.TempDir(), ".metaflow"))
		r := &Run{Graph: g, Store: store, Exec: ex, Code: []byte("code"), Opts: Options{MaxWorkers: 2, MaxNumSplits: n}}
		if err := r.Prepare(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := r.Execute(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*(n+3)), "us/task")
}
