package scheduler

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/metaflow-r/metaflow/engine/datastore"
)

// BenchmarkForeach5000 against BenchmarkForeach200: the engine's cost of a
// split must not grow with the fan-out (us/task alike).
func BenchmarkForeach5000(b *testing.B) {
	t := &testing.T{}
	g := foreachGraph(t)
	for i := 0; i < b.N; i++ {
		ex := &fakeExec{steps: map[string]stepFunc{"start": splits(5000)}, fast: true}
		store := datastore.NewLocal(filepath.Join(b.TempDir(), ".metaflow"))
		r := &Run{Graph: g, Store: store, Exec: ex, Code: []byte("code"), Opts: Options{MaxWorkers: 2, MaxNumSplits: 5000}}
		if err := r.Prepare(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := r.Execute(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*5003), "us/task")
}
