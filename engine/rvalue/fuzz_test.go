package rvalue

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: no document, however malformed, makes the decoder panic or
// hang; what it accepts it can encode, format and decode again. The seed
// corpus is the shared vectors (tests/vectors) plus testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(vectorDir, "*.mpk"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		// Large seeds make mutation and minimization crawl; the big vectors'
		// shapes are covered by the small "b" seeds below.
		if len(b) <= 4096 {
			f.Add(b)
		}
	}
	f.Add([]byte("\x83\xa1t\xa3raw\xa1n\xce\xff\xff\xff\xff\xa1b\x91\xc4\x01x"))
	f.Add([]byte("\x82\xa1t\xa3rds\xa1v\xc6\xff\xff\xff\xff"))
	f.Add([]byte("\x83\xa1t\xa6double\xa1n\x02\xa1b\x92\xc4\x08\x00\x00\x00\x00\x00\x00\xf0\x3f\xc4\x08\x00\x00\x00\x00\x00\x00\x00\x40"))
	f.Add([]byte("\x83\xa1t\xa3rds\xa1n\x03\xa1b\x92\xc4\x01X\xc4\x02\x0a\x00"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := Decode(bytes.NewReader(doc))
		if err != nil {
			return
		}
		_ = Format(v)
		var buf bytes.Buffer
		if err := Encode(&buf, v); err != nil {
			t.Fatalf("a decoded value does not encode: %v", err)
		}
		if _, err := Decode(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("a re-encoded value does not decode: %v", err)
		}
	})
}
