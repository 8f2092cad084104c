package rvalue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// chunkBytes is the largest "b" chunk; bigLength the length from which
// logical, integer, double, complex and raw vectors use "b" (an rds value
// uses it when its serialization is large, so that no bin holds over 4 GiB).
const (
	chunkBytes = 64 << 20
	bigLength  = 65536
)

// preallocLimit bounds the elements reserved from a document's claimed
// length before they are read (a forged length must not cost memory).
const preallocLimit = 1 << 20

// elemSize is the size of one element in "b".
func elemSize(t Type) int {
	switch t {
	case Logical, Integer:
		return 4
	case Double:
		return 8
	case Complex:
		return 16
	case Raw, RDS:
		return 1
	}
	return 0
}

// DecodeFile reads the R-value document at path.
func DecodeFile(path string) (Value, error) {
	f, err := os.Open(path)
	if err != nil {
		return Value{}, fmt.Errorf("rvalue: %w", err)
	}
	defer f.Close()
	v, err := Decode(f)
	if err != nil {
		return Value{}, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Decode reads one R-value document from r, which must hold nothing else.
// It accepts any msgpack integer width and float32 where R writes int32 and
// float64, and any key order after "t".
func Decode(r io.Reader) (Value, error) {
	d := msgpack.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	v, err := decodeValue(d, "")
	if err != nil {
		return Value{}, err
	}
	if _, err := d.PeekCode(); !errors.Is(err, io.EOF) {
		if err != nil {
			return Value{}, fmt.Errorf("rvalue: after the document: %w", err)
		}
		return Value{}, errors.New("rvalue: trailing bytes after the document")
	}
	return v, nil
}

// Error is a value that could not be decoded or encoded. Path locates it
// the way R would: "[[2]]$a", `attr([[2]], "names")`; empty for the top.
type Error struct {
	Op   string // "decoding" or "encoding"
	Path string
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("rvalue: %s %s: %v", e.Op, where(e.Path), e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// wrap adds the position to err, once: errors from nested values already
// carry theirs.
func wrap(op, path string, err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return &Error{Op: op, Path: path, Err: err}
}

// where names a position for error messages.
func where(path string) string {
	if path == "" {
		return "value"
	}
	return path
}

func decodeValue(d *msgpack.Decoder, path string) (Value, error) {
	fail := func(err error) (Value, error) {
		return Value{}, wrap("decoding", path, err)
	}
	nk, err := d.DecodeMapLen()
	if err != nil {
		return fail(err)
	}
	if nk < 1 {
		return fail(errors.New("an R value must be a map starting with \"t\""))
	}
	if key, err := d.DecodeString(); err != nil || key != "t" {
		return fail(errors.New("an R value must start with key \"t\""))
	}
	ts, err := d.DecodeString()
	if err != nil {
		return fail(fmt.Errorf("reading \"t\": %w", err))
	}
	v := Value{Type: Type(ts)}
	switch v.Type {
	case Null, Logical, Integer, Double, Complex, Character, Raw, List, RDS:
	default:
		return fail(fmt.Errorf("unknown type %q", ts))
	}
	n := int64(-1)
	got := v.Type == Null
	for i := 1; i < nk; i++ {
		key, err := d.DecodeString()
		if err != nil {
			return fail(fmt.Errorf("reading a key: %w", err))
		}
		switch key {
		case "n":
			if n, err = d.DecodeInt64(); err != nil {
				return fail(fmt.Errorf("reading \"n\": %w", err))
			}
			if n < 0 {
				return fail(fmt.Errorf("negative \"n\" %d", n))
			}
		case "a":
			if v.Attrs, err = decodeAttrs(d, path); err != nil {
				return fail(err)
			}
		case "v":
			if err := decodeV(d, &v, path); err != nil {
				return fail(err)
			}
			got = true
		case "b":
			if err := decodeB(d, &v, n); err != nil {
				return fail(err)
			}
			got = true
		default:
			return fail(fmt.Errorf("unknown key %q", key))
		}
	}
	if !got {
		return fail(fmt.Errorf("%s value without \"v\" or \"b\"", v.Type))
	}
	if n >= 0 && int64(v.Len()) != n && v.Type != Null && v.Type != RDS {
		return fail(fmt.Errorf("\"n\" is %d but there are %d elements", n, v.Len()))
	}
	return v, nil
}

func decodeAttrs(d *msgpack.Decoder, path string) ([]Attr, error) {
	n, err := d.DecodeMapLen()
	if err != nil {
		return nil, fmt.Errorf("attributes: %w", err)
	}
	attrs := make([]Attr, 0, min(max(n, 0), 64))
	for i := 0; i < n; i++ {
		name, err := d.DecodeString()
		if err != nil {
			return nil, fmt.Errorf("attribute name: %w", err)
		}
		a, err := decodeValue(d, fmt.Sprintf("attr(%s, %q)", where(path), name))
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, Attr{Name: name, Value: a})
	}
	return attrs, nil
}

func isNil(d *msgpack.Decoder) (bool, error) {
	c, err := d.PeekCode()
	if err != nil {
		return false, err
	}
	if c == msgpcode.Nil {
		return true, d.DecodeNil()
	}
	return false, nil
}

func arrayLen(d *msgpack.Decoder) (int, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, errors.New("expected an array, found nil")
	}
	return n, nil
}

// decodeInt reads an integer element written with any msgpack number type.
func decodeInt(d *msgpack.Decoder) (int64, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if c == msgpcode.Float || c == msgpcode.Double {
		f, err := d.DecodeFloat64()
		if err != nil {
			return 0, err
		}
		if f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return 0, fmt.Errorf("%v is not an int32", f)
		}
		return int64(f), nil
	}
	return d.DecodeInt64()
}

func decodeV(d *msgpack.Decoder, v *Value, path string) error {
	if v.Type == Null || v.Type == RDS || v.Type == Raw {
		if v.Type == Null {
			return d.Skip()
		}
		b, err := d.DecodeBytes()
		if err != nil {
			return err
		}
		if b == nil {
			b = []byte{}
		}
		if v.Type == RDS {
			v.RDS = b
		} else {
			v.Raw = b
		}
		return nil
	}
	n, err := arrayLen(d)
	if err != nil {
		return err
	}
	// The array's length is the document's claim: reserve at most
	// preallocLimit elements on trust and grow as elements really arrive.
	c := min(n, preallocLimit)
	switch v.Type {
	case Logical:
		v.Logical = make([]int32, 0, c)
	case Integer:
		v.Integer = make([]int32, 0, c)
	case Double:
		v.Double = make([]float64, 0, c)
	case Complex:
		v.Complex = make([]complex128, 0, c)
	case Character:
		v.Character = make([]Str, 0, c)
	case List:
		v.List = make([]Value, 0, c)
	}
	for i := 0; i < n; i++ {
		switch v.Type {
		case Logical:
			v.Logical = append(v.Logical, 0)
		case Integer:
			v.Integer = append(v.Integer, 0)
		case Double:
			v.Double = append(v.Double, 0)
		case Complex:
			v.Complex = append(v.Complex, 0)
		case Character:
			v.Character = append(v.Character, Str{})
		case List:
			v.List = append(v.List, Value{})
		}
		if v.Type == List {
			if v.List[i], err = decodeValue(d, fmt.Sprintf("%s[[%d]]", path, i+1)); err != nil {
				return err
			}
			continue
		}
		na, err := isNil(d)
		if err != nil {
			return fmt.Errorf("element %d: %w", i+1, err)
		}
		switch v.Type {
		case Logical:
			if na {
				v.Logical[i] = NALogical
				continue
			}
			var x int64
			if c, _ := d.PeekCode(); c == msgpcode.True || c == msgpcode.False {
				b, err := d.DecodeBool()
				if err != nil {
					return fmt.Errorf("logical element %d: %w", i+1, err)
				}
				if b {
					x = 1
				}
			} else if x, err = decodeInt(d); err != nil { // other writers' 0/1
				return fmt.Errorf("logical element %d: %w", i+1, err)
			}
			if x != 0 {
				v.Logical[i] = 1
			}
		case Integer:
			if na {
				v.Integer[i] = NAInteger
				continue
			}
			x, err := decodeInt(d)
			if err != nil {
				return fmt.Errorf("integer element %d: %w", i+1, err)
			}
			if x <= math.MinInt32 || x > math.MaxInt32 {
				return fmt.Errorf("integer element %d: %d is out of R's int range", i+1, x)
			}
			v.Integer[i] = int32(x)
		case Double:
			if na {
				v.Double[i] = NAReal
				continue
			}
			if v.Double[i], err = d.DecodeFloat64(); err != nil {
				return fmt.Errorf("double element %d: %w", i+1, err)
			}
		case Complex:
			if na {
				v.Complex[i] = complex(NAReal, NAReal)
				continue
			}
			if k, err := arrayLen(d); err != nil || k != 2 {
				return fmt.Errorf("complex element %d must be [re, im]", i+1)
			}
			re, err1 := d.DecodeFloat64()
			im, err2 := d.DecodeFloat64()
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("complex element %d: %w", i+1, err)
			}
			v.Complex[i] = complex(re, im)
		case Character:
			if na {
				v.Character[i] = Str{NA: true}
				continue
			}
			if v.Character[i].S, err = d.DecodeString(); err != nil {
				return fmt.Errorf("character element %d: %w", i+1, err)
			}
		}
	}
	return nil
}

// decodeB reads "b": an array of bin chunks of little-endian elements,
// converted through a small reused buffer.
func decodeB(d *msgpack.Decoder, v *Value, n int64) error {
	size := elemSize(v.Type)
	if size == 0 {
		return fmt.Errorf("\"b\" is not allowed for type %s", v.Type)
	}
	chunks, err := arrayLen(d)
	if err != nil {
		return fmt.Errorf("\"b\": %w", err)
	}
	// "n" sizes the slice up front, up to preallocLimit elements; a
	// document claiming more grows by appending, not by reserving it on trust.
	capacity := int(min(max(n, 0), preallocLimit))
	switch v.Type {
	case Logical:
		v.Logical = make([]int32, 0, capacity)
	case Integer:
		v.Integer = make([]int32, 0, capacity)
	case Double:
		v.Double = make([]float64, 0, capacity)
	case Complex:
		v.Complex = make([]complex128, 0, capacity)
	case Raw:
		v.Raw = make([]byte, 0, capacity)
	case RDS:
		v.RDS = make([]byte, 0, capacity)
	}
	buf := make([]byte, 1<<20)
	for c := 0; c < chunks; c++ {
		left, err := d.DecodeBytesLen()
		if err != nil {
			return fmt.Errorf("\"b\" chunk %d: %w", c+1, err)
		}
		if left < 0 || left%size != 0 {
			return fmt.Errorf("\"b\" chunk %d: %d bytes is not a multiple of %d", c+1, left, size)
		}
		for left > 0 {
			k := min(left, len(buf))
			if err := d.ReadFull(buf[:k]); err != nil {
				return fmt.Errorf("\"b\" chunk %d: %w", c+1, err)
			}
			appendElems(v, buf[:k], size)
			left -= k
		}
	}
	return nil
}

// appendElems appends the little-endian elements in b (whole elements only).
func appendElems(v *Value, b []byte, size int) {
	le := binary.LittleEndian
	switch v.Type {
	case Raw:
		v.Raw = append(v.Raw, b...)
	case RDS:
		v.RDS = append(v.RDS, b...)
	case Logical:
		for i := 0; i+size <= len(b); i += size {
			v.Logical = append(v.Logical, int32(le.Uint32(b[i:])))
		}
	case Integer:
		for i := 0; i+size <= len(b); i += size {
			v.Integer = append(v.Integer, int32(le.Uint32(b[i:])))
		}
	case Double:
		for i := 0; i+size <= len(b); i += size {
			v.Double = append(v.Double, math.Float64frombits(le.Uint64(b[i:])))
		}
	case Complex:
		for i := 0; i+size <= len(b); i += size {
			v.Complex = append(v.Complex, complex(math.Float64frombits(le.Uint64(b[i:])),
				math.Float64frombits(le.Uint64(b[i+8:]))))
		}
	}
}
