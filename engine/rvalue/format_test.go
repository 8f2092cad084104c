package rvalue

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // lines that must appear
	}{
		{"null", []string{"NULL"}},
		{"logical", []string{"[1]  TRUE FALSE    NA"}},
		{"double", []string{"NA", "NaN", "-Inf", "3.141593e+00"}},
		{"character", []string{`[1] "a"`, `[3] NA`, `"été 日本語"`}},
		{"factor", []string{"[1] lo   hi   <NA> lo", "Levels: lo hi"}},
		{"ordered", []string{"Levels: S < M < L"}},
		{"named", []string{"  a   b c d", "  1  NA   3"}},
		{"matrix", []string{"     A  B C", "r1 1.5 NA 5", "r2 2.0  4 6"}},
		{"df", []string{"  id name score grp", "3  3 <NA>   2.0   x"}},
		{"df_rownames", []string{"first   TRUE"}},
		{"list", []string{"$a", "$b", "NULL", "$c$d", `[1] "x"`, "$c$e", "list()", "[[4]]"}},
		{"date", []string{`"2024-01-15"`, `"1969-12-31"`}},
		{"posixct", []string{`"2024-01-15 12:34:56 UTC"`}},
		{"posixct_tz", []string{`"2023-11-14 17:13:20 EST"`}},
		{"closure", []string{"<R object: closure>"}},
		{"formula", []string{"<R object: formula>"}},
		{"big_integer", []string{" [1]  1  2  3  4  5  6 NA", "... and 69980 more"}},
		{"table", []string{"a b c", "2 1 1"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			v, err := DecodeFile(filepath.Join(vectorDir, tc.file+".mpk"))
			if err != nil {
				t.Fatal(err)
			}
			got := Format(v)
			for _, line := range tc.want {
				if !strings.Contains(got, line) {
					t.Errorf("Format output lacks %q:\n%s", line, got)
				}
			}
		})
	}
}

func TestFormatReals(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want string
	}{
		{[]float64{1, 2.5}, "1.0 2.5"},
		{[]float64{100000}, "1e+05"},
		{[]float64{123456}, "123456"},
		{[]float64{1.0 / 3}, "0.3333333"},
		{[]float64{0.1 + 0.2}, "0.3"},
		{[]float64{-0.0, 2}, "0 2"},
		{[]float64{NAReal, math.NaN(), math.Inf(1)}, "NA NaN Inf"},
		{[]float64{1e-20, 1}, "1e-20 1e+00"},
	} {
		if got := strings.Join(formatReals(tc.in), " "); got != tc.want {
			t.Errorf("formatReals(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFormatTruncatesLists(t *testing.T) {
	v := Value{Type: List}
	for i := 0; i < 25; i++ {
		v.List = append(v.List, Value{Type: Integer, Integer: []int32{int32(i)}})
	}
	got := Format(v)
	if !strings.Contains(got, "[[20]]") || strings.Contains(got, "[[21]]") || !strings.Contains(got, "... and 5 more elements") {
		t.Errorf("got:\n%s", got)
	}
}

// Format must not panic on documents other writers could produce.
func TestFormatOddValues(t *testing.T) {
	chr := func(ss ...string) Value {
		v := Value{Type: Character}
		for _, s := range ss {
			v.Character = append(v.Character, Str{S: s})
		}
		return v
	}
	ints := func(xs ...int32) Value { return Value{Type: Integer, Integer: xs} }
	for name, v := range map[string]Value{
		"short names":  {Type: Double, Double: []float64{1, 2, 3}, Attrs: []Attr{{Name: "names", Value: chr("a")}}},
		"dim mismatch": {Type: Integer, Integer: []int32{1, 2, 3}, Attrs: []Attr{{Name: "dim", Value: ints(2, 2)}}},
		"short dimnames": {Type: Integer, Integer: []int32{1, 2, 3, 4}, Attrs: []Attr{{Name: "dim", Value: ints(2, 2)},
			{Name: "dimnames", Value: Value{Type: List, List: []Value{chr("r"), chr()}}}}},
		"bad factor": {Type: Integer, Integer: []int32{0, 5, NAInteger}, Attrs: []Attr{{Name: "levels", Value: chr("a")},
			{Name: "class", Value: chr("factor")}}},
		"ragged df": {Type: List, List: []Value{ints(1, 2, 3), chr("x")}, Attrs: []Attr{{Name: "names", Value: chr("a")},
			{Name: "class", Value: chr("data.frame")}, {Name: "row.names", Value: ints(NAInteger, -3)}}},
		"bad tz": {Type: Double, Double: []float64{1e300, math.Inf(1), 0}, Attrs: []Attr{{Name: "class", Value: chr("POSIXct")},
			{Name: "tzone", Value: chr("Not/AZone")}}},
		"bad rds": {Type: RDS, RDS: []byte("X\n\x00\x00\x00\x02\x00\x04\x02\x00\x00\x02\x03\x00\x00\x00\x19")},
	} {
		if got := Format(v); got == "" {
			t.Errorf("%s: empty output", name)
		}
	}
}
