package scheduler

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzReadResult: whatever a task leaves as its result file, reading it is
// an error or a result, never a panic.
func FuzzReadResult(f *testing.F) {
	for _, v := range []any{
		map[string]any{"artifacts": []string{"a", "b"}, "merged": map[string]int{"x": 0}, "foreach_count": 3},
		map[string]any{"artifacts": "a", "merged": []any{}, "foreach_count": -1},
		map[string]any{"artifacts": []any{1, nil}, "merged": map[string]any{"x": "y"}, "foreach_count": 1.5},
		[]any{1, 2},
	} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p := filepath.Join(t.TempDir(), "_result.mpk")
		if err := os.WriteFile(p, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := ReadResult(p)
		if err == nil && res == nil {
			t.Fatal("no result and no error")
		}
	})
}
