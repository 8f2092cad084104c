package rvalue

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestElementsSplitsWhatRExtractsPlainly(t *testing.T) {
	cases := []struct {
		file string
		ok   bool
	}{
		{"list", true}, {"df", true}, {"named", true}, {"integer", true}, {"double", true},
		{"character", true}, {"logical", true}, {"raw", true}, {"complex", true}, {"big_double", true},
		{"factor", false}, {"date", false}, {"posixct", false}, {"matrix", false}, {"closure", false},
		{"df_rownames", true},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join(vectorDir, tc.file+".mpk"))
			if err != nil {
				t.Fatal(err)
			}
			whole, err := Decode(bytes.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			var got []Value
			ok, err := Elements(bytes.NewReader(doc), func(e []byte) error {
				v, err := Decode(bytes.NewReader(e))
				got = append(got, v)
				return err
			})
			if err != nil || ok != tc.ok {
				t.Fatalf("Elements: ok=%v err=%v; want ok=%v", ok, err, tc.ok)
			}
			if !ok {
				if len(got) != 0 {
					t.Fatalf("each was called %d times for a value it does not split", len(got))
				}
				return
			}
			if len(got) != whole.Len() {
				t.Fatalf("%d elements, want %d", len(got), whole.Len())
			}
			for i, e := range got {
				want := whole.Element(i)
				if e.Len() != want.Len() || !reflect.DeepEqual(Format(e), Format(want)) || !reflect.DeepEqual(e.Attrs, want.Attrs) {
					t.Fatalf("element %d = %s, want %s", i+1, Format(e), Format(want))
				}
			}
		})
	}
}
