package rvalue

import (
	"bytes"
	"strings"
	"testing"
)

// Raw vectors from bigLength bytes, and rds values whose serialization is
// over a chunk, travel as "b" chunks (no bin over 4 GiB), and round-trip.
func TestRawAndRDSUseChunks(t *testing.T) {
	big := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	cases := []struct {
		name   string
		v      Value
		chunks bool
	}{
		{"small raw", Value{Type: Raw, Raw: big(10)}, false},
		{"raw just under", Value{Type: Raw, Raw: big(bigLength - 1)}, false},
		{"raw at the length", Value{Type: Raw, Raw: big(bigLength)}, true},
		{"raw over a chunk", Value{Type: Raw, Raw: big(chunkBytes + 3)}, true},
		{"small rds", Value{Type: RDS, RDS: big(1000)}, false},
		{"rds over a chunk", Value{Type: RDS, RDS: big(chunkBytes + 5)}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encode(&buf, tc.v); err != nil {
				t.Fatal(err)
			}
			head := buf.Bytes()[:min(buf.Len(), 40)]
			if got := bytes.Contains(head, []byte("\xa1b")); got != tc.chunks {
				t.Fatalf("uses \"b\" = %v, want %v (head %q)", got, tc.chunks, head)
			}
			back, err := Decode(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if back.Type != tc.v.Type || !bytes.Equal(back.Raw, tc.v.Raw) || !bytes.Equal(back.RDS, tc.v.RDS) {
				t.Fatalf("round trip: %s of %d+%d bytes, want %s of %d+%d", back.Type, len(back.Raw), len(back.RDS),
					tc.v.Type, len(tc.v.Raw), len(tc.v.RDS))
			}
		})
	}
	// "b" stays refused for types that have no element size.
	doc := []byte("\x82\xa1t\xa9character\xa1b\x90")
	if _, err := Decode(bytes.NewReader(doc)); err == nil || !strings.Contains(err.Error(), `"b" is not allowed`) {
		t.Fatalf("character in \"b\": %v", err)
	}
}
