package rvalue

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Encode writes v as an R-value document in the canonical form the base-R
// codec produces: keys t, n, a, v/b; the smallest msgpack headers; integer
// elements always int32 and doubles always float64; vectors of 65,536 or
// more logical/integer/double/complex elements as "b" chunks of 64 MiB.
func Encode(w io.Writer, v Value) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	e := msgpack.NewEncoder(bw)
	if err := encodeValue(e, v, ""); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("rvalue: writing: %w", err)
	}
	return nil
}

func encodeValue(e *msgpack.Encoder, v Value, path string) (err error) {
	defer func() { err = wrap("encoding", path, err) }()
	switch v.Type {
	case Null:
		return firstErr(e.EncodeMapLen(1), e.EncodeString("t"), e.EncodeString(string(Null)))
	case RDS:
		if len(v.RDS) > chunkBytes {
			// As R writes a large serialization: "n" bytes in "b" chunks.
			return firstErr(e.EncodeMapLen(3), e.EncodeString("t"), e.EncodeString(string(RDS)),
				e.EncodeString("n"), e.EncodeUint(uint64(len(v.RDS))), e.EncodeString("b"),
				encodeChunks(e, v, len(v.RDS)))
		}
		return firstErr(e.EncodeMapLen(2), e.EncodeString("t"), e.EncodeString(string(RDS)),
			e.EncodeString("v"), encodeBin(e, v.RDS))
	case Logical, Integer, Double, Complex, Character, Raw, List:
	default:
		return fmt.Errorf("unknown type %q", v.Type)
	}
	n := v.Len()
	big := n >= bigLength && elemSize(v.Type) > 0
	keys := 2
	if big {
		keys++
	}
	if len(v.Attrs) > 0 {
		keys++
	}
	if err := firstErr(e.EncodeMapLen(keys), e.EncodeString("t"), e.EncodeString(string(v.Type))); err != nil {
		return err
	}
	if big {
		if err := firstErr(e.EncodeString("n"), e.EncodeUint(uint64(n))); err != nil {
			return err
		}
	}
	if len(v.Attrs) > 0 {
		if err := firstErr(e.EncodeString("a"), e.EncodeMapLen(len(v.Attrs))); err != nil {
			return err
		}
		for _, a := range v.Attrs {
			if err := e.EncodeString(a.Name); err != nil {
				return err
			}
			if err := encodeValue(e, a.Value, fmt.Sprintf("attr(%s, %q)", where(path), a.Name)); err != nil {
				return err
			}
		}
	}
	if big {
		if err := e.EncodeString("b"); err != nil {
			return err
		}
		return encodeChunks(e, v, n)
	}
	if err := e.EncodeString("v"); err != nil {
		return err
	}
	if v.Type == Raw {
		return encodeBin(e, v.Raw)
	}
	if err := e.EncodeArrayLen(n); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var err error
		switch v.Type {
		case Logical:
			switch x := v.Logical[i]; {
			case x == NALogical:
				err = e.EncodeNil()
			default:
				err = e.EncodeBool(x != 0)
			}
		case Integer:
			if v.Integer[i] == NAInteger {
				err = e.EncodeNil()
			} else {
				err = e.EncodeInt32(v.Integer[i])
			}
		case Double:
			err = e.EncodeFloat64(v.Double[i])
		case Complex:
			err = firstErr(e.EncodeArrayLen(2), e.EncodeFloat64(real(v.Complex[i])),
				e.EncodeFloat64(imag(v.Complex[i])))
		case Character:
			if v.Character[i].NA {
				err = e.EncodeNil()
			} else {
				err = e.EncodeString(v.Character[i].S)
			}
		case List:
			err = encodeValue(e, v.List[i], fmt.Sprintf("%s[[%d]]", path, i+1))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// encodeBin writes a bin of any length, including zero (EncodeBytes would
// write nil for a nil slice).
func encodeBin(e *msgpack.Encoder, b []byte) error {
	if err := e.EncodeBytesLen(len(b)); err != nil {
		return err
	}
	_, err := e.Writer().Write(b)
	return err
}

func encodeChunks(e *msgpack.Encoder, v Value, n int) error {
	size := elemSize(v.Type)
	per := chunkBytes / size
	chunks := (n + per - 1) / per
	if err := e.EncodeArrayLen(chunks); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<20)
	w := e.Writer()
	for from := 0; from < n; from += per {
		to := min(n, from+per)
		if err := e.EncodeBytesLen((to - from) * size); err != nil {
			return err
		}
		step := cap(buf) / size
		for i := from; i < to; i += step {
			buf = appendLE(buf[:0], v, i, min(to, i+step))
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendLE appends elements [from, to) of v in little-endian form.
func appendLE(b []byte, v Value, from, to int) []byte {
	le := binary.LittleEndian
	switch v.Type {
	case Raw:
		b = append(b, v.Raw[from:to]...)
	case RDS:
		b = append(b, v.RDS[from:to]...)
	case Logical:
		for _, x := range v.Logical[from:to] {
			b = le.AppendUint32(b, uint32(x))
		}
	case Integer:
		for _, x := range v.Integer[from:to] {
			b = le.AppendUint32(b, uint32(x))
		}
	case Double:
		for _, x := range v.Double[from:to] {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
	case Complex:
		for _, x := range v.Complex[from:to] {
			b = le.AppendUint64(b, math.Float64bits(real(x)))
			b = le.AppendUint64(b, math.Float64bits(imag(x)))
		}
	}
	return b
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
