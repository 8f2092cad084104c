package scheduler

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
)

// encodeRCharacter encodes a character vector as an R-value document.
func encodeRCharacter(t *testing.T, v ...string) []byte {
	t.Helper()
	// In R's order ("t" first), not a Go map's (random).
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	err := errors.Join(enc.EncodeMapLen(2), enc.EncodeString("t"), enc.EncodeString("character"),
		enc.EncodeString("v"), enc.Encode(v))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A foreach value whose blob was damaged into another valid R value (a
// shorter one) is an error naming the blob when a split cuts it, not
// splits of the wrong value: the cutter reads the blob to its end, where
// it is checked.
func TestCutForeachChecksTheWholeBlob(t *testing.T) {
	cases := []struct {
		name    string
		content func(t *testing.T) []byte // nil: the blob is sound
		errHas  string
	}{
		{"sound blob", nil, ""},
		{"another, shorter R value", func(t *testing.T) []byte { return encodeRCharacter(t, "a") }, "is corrupt"},
		{"another R value of the same length", func(t *testing.T) []byte { return encodeRCharacter(t, "x", "y", "z") }, "is corrupt"},
		{"trailing bytes", func(t *testing.T) []byte { return append(encodeRCharacter(t, "a", "b", "c"), 0xc0) }, "is corrupt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, store := newRun(t, foreachGraph(t), &fakeExec{}, Options{})
			r.meta = &datastore.Run{Flow: "F", RunID: "1"}
			a, err := store.Put(bg, "F", bytes.NewReader(encodeRCharacter(t, "a", "b", "c")))
			if err != nil {
				t.Fatal(err)
			}
			if tc.content != nil {
				p := filepath.Join(store.Root, "F", "data", a.SHA[:2], a.SHA)
				os.Chmod(p, 0o644)
				if err := os.WriteFile(p, tc.content(t), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			el, err := r.splitOf(bg, "F", a.SHA, 2)
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(el.doc, encodeRCharacter(t, "c")) {
					t.Fatalf("split 2 holds %q", el.doc)
				}
				return
			}
			if !errors.Is(err, errs.ErrCorrupt) || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), a.SHA) {
				t.Fatalf("want a corrupt-blob error naming %s, got %v (split %+v)", a.SHA, err, el)
			}
		})
	}
}

// Small elements travel in the specs; a value with an element over
// splitDocMax, or over splitDocsMax in all, is cut into files instead (the
// engine does not hold big values), each element in its own stamped file.
func TestForeachElementsInMemoryOrInFiles(t *testing.T) {
	elems := []string{"a", "bb", strings.Repeat("c", 100), "d"}
	cases := []struct {
		name           string
		docMax, allMax int
		inFiles        bool
	}{
		{"small elements stay in memory", 1 << 10, 1 << 20, false},
		{"one big element puts all in files", 64, 1 << 20, true},
		{"a big value puts all in files", 1 << 10, 100, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func(d, a int) { splitDocMax, splitDocsMax = d, a }(splitDocMax, splitDocsMax)
			splitDocMax, splitDocsMax = tc.docMax, tc.allMax
			r, store := newRun(t, foreachGraph(t), &fakeExec{}, Options{})
			r.meta = &datastore.Run{Flow: "F", RunID: "1"}
			a, err := store.Put(bg, "F", bytes.NewReader(encodeRCharacter(t, elems...)))
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range elems {
				el, err := r.splitOf(bg, "F", a.SHA, i)
				if err != nil {
					t.Fatal(err)
				}
				got := el.doc
				if tc.inFiles {
					if el.doc != nil || el.file == "" || el.stamp.IsZero() {
						t.Fatalf("split %d: want a stamped file, got %+v", i, el)
					}
					got, _ = os.ReadFile(el.file)
				} else if el.file != "" || el.doc == nil {
					t.Fatalf("split %d: want its document, got %+v", i, el)
				}
				if !bytes.Equal(got, encodeRCharacter(t, want)) {
					t.Fatalf("split %d holds %q", i, got)
				}
			}
			if _, err := r.splitOf(bg, "F", a.SHA, len(elems)); err == nil {
				t.Fatal("a split past the end: want an error")
			}
		})
	}
}
