// Package rvalue reads and writes R-value msgpack documents: the format in
// which artifacts and parameters are stored (docs/ARCHITECTURE.md, "R-value
// msgpack"). Encode reproduces, byte for byte, what the base-R codec
// (shim/runtime/msgpack.R) writes for the same value.
package rvalue

import "math"

// Type is the "t" tag of an R value.
type Type string

// The R value types.
const (
	Null      Type = "null"
	Logical   Type = "logical"
	Integer   Type = "integer"
	Double    Type = "double"
	Complex   Type = "complex"
	Character Type = "character"
	Raw       Type = "raw"
	List      Type = "list"
	RDS       Type = "rds" // anything else, as R's serialize() bytes
)

// NA values. R stores NA_integer_ and NA (logical) as INT_MIN, and NA_real_
// as a NaN whose low 32 bits are 1954, which keeps it distinct from NaN.
const (
	NAInteger int32 = math.MinInt32
	NALogical int32 = math.MinInt32
)

// NAReal is R's NA_real_.
var NAReal = math.Float64frombits(0x7FF00000000007A2)

// IsNA reports whether f is R's NA_real_ (and not another NaN). Arithmetic
// may set the quiet bit, so only the low word is checked, as R does.
func IsNA(f float64) bool {
	return math.IsNaN(f) && uint32(math.Float64bits(f)) == 1954
}

// Str is one element of a character vector.
type Str struct {
	S  string
	NA bool
}

// Attr is one attribute, in R's attributes() order.
type Attr struct {
	Name  string
	Value Value
}

// Value is a decoded R value. Exactly one element slice is used, chosen by
// Type; a Null value uses none.
type Value struct {
	Type  Type
	Attrs []Attr

	Logical   []int32 // 0, 1 or NALogical
	Integer   []int32 // NAInteger for NA
	Double    []float64
	Complex   []complex128
	Character []Str
	Raw       []byte
	List      []Value
	RDS       []byte // serialize(x, NULL) of a value with no msgpack form
}

// Len is the number of elements (R's length()); 0 for NULL and rds values.
func (v Value) Len() int {
	switch v.Type {
	case Logical:
		return len(v.Logical)
	case Integer:
		return len(v.Integer)
	case Double:
		return len(v.Double)
	case Complex:
		return len(v.Complex)
	case Character:
		return len(v.Character)
	case Raw:
		return len(v.Raw)
	case List:
		return len(v.List)
	}
	return 0
}

// Attr returns the attribute called name.
func (v Value) Attr(name string) (Value, bool) {
	for _, a := range v.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return Value{}, false
}

// Strings returns a character vector's elements, NA as "NA".
func (v Value) Strings() []string {
	out := make([]string, len(v.Character))
	for i, s := range v.Character {
		if s.NA {
			out[i] = "NA"
		} else {
			out[i] = s.S
		}
	}
	return out
}

// Class is the class attribute (nil when there is none).
func (v Value) Class() []string {
	if c, ok := v.Attr("class"); ok && c.Type == Character {
		return c.Strings()
	}
	return nil
}

// Inherits reports whether class is one of v's classes.
func (v Value) Inherits(class string) bool {
	for _, c := range v.Class() {
		if c == class {
			return true
		}
	}
	return false
}

// Names is the names attribute (nil when there is none).
func (v Value) Names() []string {
	if n, ok := v.Attr("names"); ok && n.Type == Character {
		return n.Strings()
	}
	return nil
}

// Dim is the dim attribute (nil when there is none).
func (v Value) Dim() []int {
	d, ok := v.Attr("dim")
	if !ok {
		return nil
	}
	var out []int
	switch d.Type {
	case Integer:
		for _, x := range d.Integer {
			out = append(out, int(x))
		}
	case Double:
		for _, x := range d.Double {
			out = append(out, int(x))
		}
	}
	return out
}
