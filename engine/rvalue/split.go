package rvalue

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Elements calls each, in order, with an R-value document of x[[i]] for
// every element of the document's value x, when R's x[[i]] is plain
// extraction: a list (plain, or a data frame, whose elements are its
// columns) or an atomic vector whose only attribute is names (which [[
// drops). A list's elements are copied as they are, one at a time, so a
// large list never sits in memory. For any other value (a factor, a Date,
// an S3 class with its own [[, an rds value) it returns ok = false without
// calling each: the caller then extracts the element in R. A doc is valid
// only during its call (its buffer is reused).
func Elements(r io.Reader, each func(doc []byte) error) (ok bool, err error) {
	d := msgpack.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	nk, err := d.DecodeMapLen()
	if err != nil || nk < 2 {
		return false, fmt.Errorf("rvalue: not an R value: %v", err)
	}
	if key, err := d.DecodeString(); err != nil || key != "t" {
		return false, fmt.Errorf("rvalue: an R value must start with \"t\"")
	}
	ts, err := d.DecodeString()
	if err != nil {
		return false, err
	}
	v := Value{Type: Type(ts)}
	n := int64(-1)
	for i := 1; i < nk; i++ {
		key, err := d.DecodeString()
		if err != nil {
			return false, err
		}
		switch key {
		case "n":
			if n, err = d.DecodeInt64(); err != nil {
				return false, err
			}
		case "a":
			if v.Attrs, err = decodeAttrs(d, ""); err != nil {
				return false, err
			}
		case "v", "b":
			if !splittable(v) {
				return false, nil
			}
			if v.Type == List && key == "v" {
				return true, eachListElement(d, each)
			}
			if key == "v" {
				err = decodeV(d, &v, "")
			} else {
				err = decodeB(d, &v, n)
			}
			if err != nil {
				return false, err
			}
			return true, eachAtomicElement(v, each)
		default:
			return false, fmt.Errorf("rvalue: unknown key %q", key)
		}
	}
	return false, nil
}

// splittable: x[[i]] is the plain element of v.
func splittable(v Value) bool {
	switch v.Type {
	case Logical, Integer, Double, Complex, Character, Raw:
		for _, a := range v.Attrs {
			if a.Name != "names" {
				return false
			}
		}
		return true
	case List:
		for _, a := range v.Attrs {
			switch a.Name {
			case "names", "row.names":
			case "class":
				if a.Value.Type != Character || len(a.Value.Character) != 1 || a.Value.Character[0].S != "data.frame" {
					return false
				}
			default:
				return false
			}
		}
		return true
	}
	return false
}

// eachListElement copies the list's elements, R-value documents already.
func eachListElement(d *msgpack.Decoder, each func([]byte) error) error {
	n, err := arrayLen(d)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		raw, err := d.DecodeRaw()
		if err != nil {
			return fmt.Errorf("rvalue: list element %d: %w", i+1, err)
		}
		if err := each(raw); err != nil {
			return err
		}
	}
	return nil
}

// eachAtomicElement encodes each element as a vector of length one.
func eachAtomicElement(v Value, each func([]byte) error) error {
	var buf bytes.Buffer
	for i := 0; i < v.Len(); i++ {
		buf.Reset()
		if err := Encode(&buf, v.Element(i)); err != nil {
			return err
		}
		if err := each(buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// Element is R's x[[i + 1]] of a list (its element) or of an atomic vector
// (a vector of length one, without attributes).
func (v Value) Element(i int) Value {
	if v.Type == List {
		return v.List[i]
	}
	e := Value{Type: v.Type}
	switch v.Type {
	case Logical:
		e.Logical = v.Logical[i : i+1]
	case Integer:
		e.Integer = v.Integer[i : i+1]
	case Double:
		e.Double = v.Double[i : i+1]
	case Complex:
		e.Complex = v.Complex[i : i+1]
	case Character:
		e.Character = v.Character[i : i+1]
	case Raw:
		e.Raw = v.Raw[i : i+1]
	}
	return e
}
