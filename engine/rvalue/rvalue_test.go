package rvalue

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

const vectorDir = "../../tests/vectors"

// Expectations for every shared vector (tests/vectors/cases.R).
var vectorCases = map[string]struct {
	typ   Type
	len   int
	class string
	check func(t *testing.T, v Value)
}{
	"null":    {typ: Null},
	"logical": {typ: Logical, len: 3, check: wantLogical(1, 0, NALogical)},
	"integer": {typ: Integer, len: 9, check: wantInteger(0, 1, -1, NAInteger, math.MaxInt32, -math.MaxInt32, 127, 128, -33)},
	"double": {typ: Double, len: 11, check: func(t *testing.T, v Value) {
		d := v.Double
		if d[0] != 0 || math.Signbit(d[0]) || !math.Signbit(d[1]) || d[2] != 1.5 || d[3] != -2.25 {
			t.Errorf("zeros and finite values: %v", d[:4])
		}
		if !IsNA(d[4]) || !math.IsNaN(d[5]) || IsNA(d[5]) {
			t.Errorf("NA must stay distinct from NaN: %x %x", math.Float64bits(d[4]), math.Float64bits(d[5]))
		}
		if !math.IsInf(d[6], 1) || !math.IsInf(d[7], -1) || d[8] != 1e300 || d[9] != 5e-324 || d[10] != math.Pi {
			t.Errorf("special values: %v", d[6:])
		}
	}},
	"complex": {typ: Complex, len: 4, check: func(t *testing.T, v Value) {
		c := v.Complex
		if c[0] != complex(1, -1) || !math.IsNaN(imag(c[1])) || !math.IsInf(imag(c[2]), 1) || !IsNA(real(c[3])) {
			t.Errorf("got %v", c)
		}
	}},
	"character": {typ: Character, len: 7, check: func(t *testing.T, v Value) {
		c := v.Character
		if c[0].S != "a" || c[1].S != "" || c[1].NA || !c[2].NA || c[3].S != "été 日本語" ||
			len(c[4].S) != 31 || len(c[5].S) != 32 || len(c[6].S) != 300 {
			t.Errorf("got %+v", c)
		}
	}},
	"raw": {typ: Raw, len: 5, check: func(t *testing.T, v Value) {
		if !bytes.Equal(v.Raw, []byte{0, 1, 127, 128, 255}) {
			t.Errorf("got %v", v.Raw)
		}
	}},
	"empty": {typ: List, len: 7, check: func(t *testing.T, v Value) {
		want := []Type{Logical, Integer, Double, Complex, Character, Raw, List}
		for i, el := range v.List {
			if el.Type != want[i] || el.Len() != 0 {
				t.Errorf("element %d: %s of %d", i+1, el.Type, el.Len())
			}
		}
	}},
	"named": {typ: Integer, len: 3, check: func(t *testing.T, v Value) {
		wantStrings(t, v.Names(), "a", "b", "c d")
		wantInteger(1, NAInteger, 3)(t, v)
	}},
	"matrix": {typ: Double, len: 6, check: func(t *testing.T, v Value) {
		if d := v.Dim(); len(d) != 2 || d[0] != 2 || d[1] != 3 {
			t.Errorf("dim %v", d)
		}
		dn, _ := v.Attr("dimnames")
		wantStrings(t, dn.List[1].Strings(), "A", "B", "C")
		if !IsNA(v.Double[2]) {
			t.Errorf("element 3 should be NA")
		}
	}},
	"array3d": {typ: Integer, len: 24, check: func(t *testing.T, v Value) {
		if d := v.Dim(); len(d) != 3 || d[2] != 4 {
			t.Errorf("dim %v", d)
		}
	}},
	"table":   {typ: Integer, len: 3, class: "table", check: wantInteger(2, 1, 1)},
	"factor":  {typ: Integer, len: 4, class: "factor", check: wantInteger(1, 2, NAInteger, 1)},
	"ordered": {typ: Integer, len: 3, class: "ordered", check: wantInteger(1, 3, 2)},
	"df": {typ: List, len: 4, class: "data.frame", check: func(t *testing.T, v Value) {
		wantStrings(t, v.Names(), "id", "name", "score", "grp")
		if n, names := dataFrameRows(v); n != 3 || names != nil {
			t.Errorf("rows %d %v; want 3 automatic", n, names)
		}
		if rn, _ := v.Attr("row.names"); rn.Type != Integer || rn.Integer[0] != NAInteger || rn.Integer[1] != -3 {
			t.Errorf("row.names should be compact c(NA, -3): %+v", rn)
		}
		if !v.List[3].Inherits("factor") {
			t.Errorf("grp should be a factor")
		}
	}},
	"df_rownames": {typ: List, len: 1, class: "data.frame", check: func(t *testing.T, v Value) {
		n, names := dataFrameRows(v)
		if n != 2 {
			t.Errorf("rows %d", n)
		}
		wantStrings(t, names, "first", "second")
	}},
	"list": {typ: List, len: 4, check: func(t *testing.T, v Value) {
		wantStrings(t, v.Names(), "a", "b", "c", "")
		if v.List[1].Type != Null || v.List[2].List[1].Type != List || v.List[3].Integer[0] != 2 {
			t.Errorf("got %+v", v.List)
		}
	}},
	"date":        {typ: Double, len: 3, class: "Date"},
	"posixct":     {typ: Double, len: 2, class: "POSIXct"},
	"posixct_tz":  {typ: Double, len: 2, class: "POSIXct"},
	"closure":     {typ: RDS, check: wantKind("closure")},
	"formula":     {typ: RDS, check: wantKind("formula")},
	"environment": {typ: RDS, check: wantKind("environment (global)")},
	"s4":          {typ: RDS, check: wantKind("S4 MpPoint")},
	"language":    {typ: RDS, check: wantKind("language")},
	"big_double": {typ: Double, len: 70000, check: func(t *testing.T, v Value) {
		if v.Double[0] != 0 || v.Double[69999] != 1 || math.Abs(v.Double[35000]-35000.0/69999) > 1e-15 {
			t.Errorf("got %v ... %v", v.Double[:2], v.Double[69999])
		}
	}},
	"big_integer": {typ: Integer, len: 70000, check: func(t *testing.T, v Value) {
		if v.Integer[0] != 1 || v.Integer[6] != NAInteger || v.Integer[69999] != NAInteger || v.Integer[69998] != 69999 {
			t.Errorf("got %v", v.Integer[:8])
		}
	}},
}

func wantLogical(want ...int32) func(*testing.T, Value) {
	return func(t *testing.T, v Value) {
		if len(v.Logical) != len(want) {
			t.Fatalf("got %v, want %v", v.Logical, want)
		}
		for i := range want {
			if v.Logical[i] != want[i] {
				t.Errorf("got %v, want %v", v.Logical, want)
			}
		}
	}
}

func wantInteger(want ...int32) func(*testing.T, Value) {
	return func(t *testing.T, v Value) {
		if len(v.Integer) != len(want) {
			t.Fatalf("got %v, want %v", v.Integer, want)
		}
		for i := range want {
			if v.Integer[i] != want[i] {
				t.Errorf("got %v, want %v", v.Integer, want)
				return
			}
		}
	}
}

func wantStrings(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func wantKind(kind string) func(*testing.T, Value) {
	return func(t *testing.T, v Value) {
		if got := RDSKind(v.RDS); got != kind {
			t.Errorf("RDSKind = %q, want %q", got, kind)
		}
	}
}

func TestSharedVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.mpk"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s (run Rscript tests/vectors/generate.R): %v", vectorDir, err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".mpk")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := vectorCases[name]
			if !ok {
				t.Fatalf("no expectation for %s: add it to vectorCases", name)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			v, err := DecodeFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if v.Type != want.typ || v.Len() != want.len {
				t.Errorf("decoded %s of length %d, want %s of length %d", v.Type, v.Len(), want.typ, want.len)
			}
			if want.class != "" && !v.Inherits(want.class) {
				t.Errorf("class %v, want %q", v.Class(), want.class)
			}
			if want.check != nil {
				want.check(t, v)
			}
			var buf bytes.Buffer
			if err := Encode(&buf, v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), raw) {
				t.Errorf("Encode(Decode(file)) differs from the file: %d vs %d bytes, first difference at %d",
					buf.Len(), len(raw), firstDiff(buf.Bytes(), raw))
			}
			if Format(v) == "" {
				t.Errorf("empty Format")
			}
		})
	}
	for name := range vectorCases {
		if !seen[name] {
			t.Errorf("vector %s.mpk is missing", name)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// doc builds an R-value document with the raw msgpack API, as another
// writer might.
func doc(t *testing.T, build func(e *msgpack.Encoder) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := build(msgpack.NewEncoder(&buf)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeOtherWriters(t *testing.T) {
	// Integers in every width, doubles written as ints and float32, keys in
	// another order after "t" and "n" before "v".
	ints := doc(t, func(e *msgpack.Encoder) error {
		return firstErr(e.EncodeMapLen(3), e.EncodeString("t"), e.EncodeString("integer"),
			e.EncodeString("v"), e.EncodeArrayLen(6), e.EncodeInt(5), e.EncodeInt8(-3), e.EncodeUint16(300),
			e.EncodeInt64(-70000), e.EncodeNil(), e.EncodeUint32(math.MaxInt32),
			e.EncodeString("a"), e.EncodeMapLen(1), e.EncodeString("names"),
			e.EncodeMapLen(2), e.EncodeString("t"), e.EncodeString("character"),
			e.EncodeString("v"), e.EncodeArrayLen(6),
			e.EncodeString("a"), e.EncodeString("b"), e.EncodeString("c"), e.EncodeString("d"), e.EncodeNil(), e.EncodeString("f"))
	})
	v, err := Decode(bytes.NewReader(ints))
	if err != nil {
		t.Fatal(err)
	}
	wantInteger(5, -3, 300, -70000, NAInteger, math.MaxInt32)(t, v)
	wantStrings(t, v.Names(), "a", "b", "c", "d", "NA", "f")

	dbl := doc(t, func(e *msgpack.Encoder) error {
		return firstErr(e.EncodeMapLen(3), e.EncodeString("t"), e.EncodeString("double"),
			e.EncodeString("n"), e.EncodeUint(4),
			e.EncodeString("v"), e.EncodeArrayLen(4), e.EncodeInt(7), e.EncodeFloat32(0.5), e.EncodeNil(), e.EncodeFloat64(-1e10))
	})
	v, err = Decode(bytes.NewReader(dbl))
	if err != nil {
		t.Fatal(err)
	}
	if d := v.Double; d[0] != 7 || d[1] != 0.5 || !IsNA(d[2]) || d[3] != -1e10 {
		t.Errorf("got %v", d)
	}
	// Re-encoding is canonical: float64 elements, no "n" for short vectors.
	var buf bytes.Buffer
	if err := Encode(&buf, v); err != nil {
		t.Fatal(err)
	}
	back, err := Decode(&buf)
	if err != nil || back.Double[1] != 0.5 || !IsNA(back.Double[2]) {
		t.Errorf("re-decoded %v, %v", back.Double, err)
	}
}

func TestLongVectorsUseChunks(t *testing.T) {
	n := 64<<20/8 + 3 // one full 64 MiB chunk of doubles and a short one
	v := Value{Type: Double, Double: make([]float64, n)}
	for i := range v.Double {
		v.Double[i] = float64(i)
	}
	v.Double[1] = NAReal
	var buf bytes.Buffer
	if err := Encode(&buf, v); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// map of 3 (t, n, b), "n" as uint32, then an array of two bins:
	// bin32 of 64 MiB and bin8 of 24 bytes.
	head := []byte{0x83, 0xa1, 't', 0xa6, 'd', 'o', 'u', 'b', 'l', 'e', 0xa1, 'n', 0xce, 0x00, 0x80, 0x00, 0x03,
		0xa1, 'b', 0x92, 0xc6, 0x04, 0x00, 0x00, 0x00}
	if !bytes.HasPrefix(b, head) {
		t.Fatalf("header % x", b[:len(head)])
	}
	if tail := b[len(head)+64<<20:]; tail[0] != 0xc4 || tail[1] != 24 {
		t.Errorf("second chunk header % x", tail[:2])
	}
	back, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Double) != n || !IsNA(back.Double[1]) || back.Double[n-1] != float64(n-1) {
		t.Errorf("round trip: len %d", len(back.Double))
	}
}

func TestNA(t *testing.T) {
	nan := math.NaN()
	if IsNA(nan) || !IsNA(NAReal) || IsNA(0) {
		t.Error("IsNA must tell NA_real_ from NaN")
	}
	quiet := math.Float64frombits(math.Float64bits(NAReal) | 1<<51) // NA after arithmetic
	if !IsNA(quiet) {
		t.Error("IsNA must ignore the quiet bit")
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(vectorDir, "df.mpk"))
	if err != nil {
		t.Fatal(err)
	}
	big, err := os.ReadFile(filepath.Join(vectorDir, "big_double.mpk"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "EOF", nil},
		{"not a map", "map", []byte{0x93, 1, 2, 3}},
		{"first key", "start with key", doc(t, func(e *msgpack.Encoder) error {
			return firstErr(e.EncodeMapLen(1), e.EncodeString("v"), e.EncodeNil())
		})},
		{"unknown type", "unknown type", doc(t, func(e *msgpack.Encoder) error {
			return firstErr(e.EncodeMapLen(1), e.EncodeString("t"), e.EncodeString("pairlist"))
		})},
		{"no elements", "without", doc(t, func(e *msgpack.Encoder) error {
			return firstErr(e.EncodeMapLen(1), e.EncodeString("t"), e.EncodeString("double"))
		})},
		{"int overflow", "out of R's int range", doc(t, func(e *msgpack.Encoder) error {
			return firstErr(e.EncodeMapLen(2), e.EncodeString("t"), e.EncodeString("integer"),
				e.EncodeString("v"), e.EncodeArrayLen(1), e.EncodeInt(1<<40))
		})},
		{"bad chunk", "not a multiple", doc(t, func(e *msgpack.Encoder) error {
			return firstErr(e.EncodeMapLen(2), e.EncodeString("t"), e.EncodeString("double"),
				e.EncodeString("b"), e.EncodeArrayLen(1), e.EncodeBytes([]byte{1, 2, 3}))
		})},
		{"n mismatch", "\"n\" is 5", doc(t, func(e *msgpack.Encoder) error {
			return firstErr(e.EncodeMapLen(3), e.EncodeString("t"), e.EncodeString("double"),
				e.EncodeString("n"), e.EncodeUint(5),
				e.EncodeString("b"), e.EncodeArrayLen(1), e.EncodeBytes(make([]byte, 8)))
		})},
		{"truncated", "EOF", good[:len(good)-3]},
		{"truncated chunk", "chunk 1", big[:1000]},
		{"trailing", "trailing bytes", append(append([]byte{}, good...), 0xc0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := DecodeFile(filepath.Join(t.TempDir(), "missing.mpk")); err == nil {
		t.Error("DecodeFile of a missing file must fail")
	}
}

func TestErrorsNamePosition(t *testing.T) {
	// A bad element deep inside a list is reported with its R path.
	data := doc(t, func(e *msgpack.Encoder) error {
		return firstErr(e.EncodeMapLen(2), e.EncodeString("t"), e.EncodeString("list"),
			e.EncodeString("v"), e.EncodeArrayLen(2),
			e.EncodeMapLen(1), e.EncodeString("t"), e.EncodeString("null"),
			e.EncodeMapLen(2), e.EncodeString("t"), e.EncodeString("logical"),
			e.EncodeString("v"), e.EncodeArrayLen(1), e.EncodeString("yes"))
	})
	_, err := Decode(bytes.NewReader(data))
	var e *Error
	if !errors.As(err, &e) || e.Path != "[[2]]" || e.Op != "decoding" {
		t.Fatalf("error %v should be an *Error at [[2]]", err)
	}
	if strings.Count(err.Error(), "rvalue:") != 1 || !strings.Contains(err.Error(), "logical element 1") {
		t.Errorf("message %q", err)
	}
	// Attribute values are located too, and encoding errors alike.
	bad := Value{Type: List, List: []Value{{Type: Integer, Attrs: []Attr{{Name: "names", Value: Value{Type: "bogus"}}}}}}
	err = Encode(io.Discard, bad)
	if !errors.As(err, &e) || e.Path != `attr([[1]], "names")` || e.Op != "encoding" {
		t.Errorf("encode error %v", err)
	}
}

func TestEncodeBuiltValues(t *testing.T) {
	// Values built in Go encode to exactly what R wrote for the same value.
	for _, tc := range []struct {
		file string
		v    Value
	}{
		{"null", Value{Type: Null}},
		{"logical", Value{Type: Logical, Logical: []int32{1, 0, NALogical}}},
		{"raw", Value{Type: Raw, Raw: []byte{0, 1, 127, 128, 255}}},
		{"named", Value{Type: Integer, Integer: []int32{1, NAInteger, 3}, Attrs: []Attr{
			{Name: "names", Value: Value{Type: Character, Character: []Str{{S: "a"}, {S: "b"}, {S: "c d"}}}},
		}}},
		{"factor", Value{Type: Integer, Integer: []int32{1, 2, NAInteger, 1}, Attrs: []Attr{
			{Name: "levels", Value: Value{Type: Character, Character: []Str{{S: "lo"}, {S: "hi"}}}},
			{Name: "class", Value: Value{Type: Character, Character: []Str{{S: "factor"}}}},
		}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(vectorDir, tc.file+".mpk"))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Encode(&buf, tc.v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("got  % x\nwant % x", buf.Bytes(), want)
			}
		})
	}
	if err := Encode(&bytes.Buffer{}, Value{Type: "weird"}); err == nil {
		t.Error("unknown types must not encode")
	}
}

func TestRDSKindRobust(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("X\n"), []byte("A\n1\n"), []byte("X\n\x00\x00\x00\x02")} {
		if got := RDSKind(b); got == "" {
			t.Errorf("RDSKind(%q) is empty", b)
		}
	}
}

// A 64 MiB double vector: the "b" path both ways.
func BenchmarkDoubles64MiB(b *testing.B) {
	v := Value{Type: Double, Double: make([]float64, 8<<20)}
	for i := range v.Double {
		v.Double[i] = float64(i) / 3
	}
	var buf bytes.Buffer
	b.SetBytes(64 << 20)
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := Encode(&buf, v); err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}
