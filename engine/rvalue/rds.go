package rvalue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// RDSKind describes the R object in serialize() bytes for display, e.g.
// "closure", "formula", "environment (global)" or "S4 MpPoint". It reads
// only the header, plus the attributes where a class can be found cheaply
// (language objects and S4 objects); it never fails, falling back to a
// coarser description.
func RDSKind(b []byte) string {
	p := &rdsParser{b: b}
	kind, err := p.describe()
	if err != nil && kind == "" {
		return "unknown"
	}
	return kind
}

// SEXP types and the serialization's special markers (R's serialize.c).
const (
	sxpNil       = 0
	sxpSym       = 1
	sxpList      = 2
	sxpClos      = 3
	sxpEnv       = 4
	sxpProm      = 5
	sxpLang      = 6
	sxpSpecial   = 7
	sxpBuiltin   = 8
	sxpChar      = 9
	sxpLgl       = 10
	sxpInt       = 13
	sxpReal      = 14
	sxpCplx      = 15
	sxpStr       = 16
	sxpDot       = 17
	sxpVec       = 19
	sxpExpr      = 20
	sxpBCode     = 21
	sxpExtPtr    = 22
	sxpWeakRef   = 23
	sxpRaw       = 24
	sxpS4        = 25
	sxpBaseEnv   = 241
	sxpEmptyEnv  = 242
	sxpPackage   = 248
	sxpNamespace = 249
	sxpBaseNS    = 250
	sxpGlobalEnv = 253
	sxpNilValue  = 254
	sxpRef       = 255
)

var sxpNames = map[int]string{
	sxpNil: "NULL", sxpSym: "symbol", sxpList: "pairlist", sxpClos: "closure",
	sxpEnv: "environment", sxpProm: "promise", sxpLang: "language", sxpSpecial: "special",
	sxpBuiltin: "builtin", sxpChar: "char", sxpLgl: "logical", sxpInt: "integer",
	sxpReal: "double", sxpCplx: "complex", sxpStr: "character", sxpDot: "...",
	sxpVec: "list", sxpExpr: "expression", sxpBCode: "bytecode", sxpExtPtr: "externalptr",
	sxpWeakRef: "weakref", sxpRaw: "raw", sxpS4: "S4", sxpNilValue: "NULL",
	sxpBaseEnv: "environment (base)", sxpEmptyEnv: "environment (empty)",
	sxpGlobalEnv: "environment (global)", sxpBaseNS: "environment (namespace:base)",
	sxpNamespace: "environment (namespace)", sxpPackage: "environment (package)",
}

type rdsParser struct {
	b    []byte
	off  int
	le   bool     // "B\n" native little-endian rather than "X\n" XDR
	refs []string // symbol names by reference index (others: "")
}

var errRDS = errors.New("unsupported serialization")

func (p *rdsParser) int() (int, error) {
	if p.off+4 > len(p.b) {
		return 0, errRDS
	}
	var u uint32
	if p.le {
		u = binary.LittleEndian.Uint32(p.b[p.off:])
	} else {
		u = binary.BigEndian.Uint32(p.b[p.off:])
	}
	p.off += 4
	return int(int32(u)), nil
}

func (p *rdsParser) skip(n int) error {
	if n < 0 || p.off+n > len(p.b) {
		return errRDS
	}
	p.off += n
	return nil
}

func (p *rdsParser) describe() (string, error) {
	if len(p.b) < 2 {
		return "", errRDS
	}
	switch string(p.b[:2]) {
	case "X\n":
	case "B\n":
		p.le = true
	default:
		return "", errRDS
	}
	p.off = 2
	version, err := p.int()
	if err != nil {
		return "", err
	}
	if err := p.skip(8); err != nil { // writer and minimal reader versions
		return "", err
	}
	if version == 3 {
		n, err := p.int()
		if err != nil {
			return "", err
		}
		if err := p.skip(n); err != nil { // native encoding name
			return "", err
		}
	}
	flags, err := p.int()
	if err != nil {
		return "", err
	}
	typ, hasAttr := flags&0xff, flags&(1<<9) != 0
	name, ok := sxpNames[typ]
	if !ok {
		name = fmt.Sprintf("type %d", typ)
	}
	switch {
	case typ == sxpNamespace:
		if info, err := p.stringVec(); err == nil && len(info) > 0 {
			return "environment (namespace:" + info[0] + ")", nil
		}
	case typ == sxpLang && hasAttr:
		// Pairlist-like objects write their attributes first.
		if attrs, err := p.pairs(); err == nil {
			for _, c := range attrs["class"] {
				if c == "formula" {
					return "formula", nil
				}
			}
		}
	case typ == sxpS4:
		name = "S4 object"
		if hasAttr {
			if attrs, err := p.pairs(); err == nil && len(attrs["class"]) > 0 {
				return "S4 " + attrs["class"][0], nil
			}
		}
	}
	return name, nil
}

// stringVec reads what follows a namespace or package marker: 0, length,
// then CHARSXPs.
func (p *rdsParser) stringVec() ([]string, error) {
	if _, err := p.int(); err != nil {
		return nil, err
	}
	n, err := p.int()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(max(n, 0), 16))
	for i := 0; i < n; i++ {
		s, err := p.item()
		if err != nil {
			return nil, err
		}
		if len(s) > 0 && len(out) < 16 {
			out = append(out, s[0])
		}
	}
	return out, nil
}

// pairs reads a tagged pairlist (an attribute list) whose values are
// simple vectors, returning the character values by tag.
func (p *rdsParser) pairs() (map[string][]string, error) {
	out := map[string][]string{}
	for {
		flags, err := p.int()
		if err != nil {
			return nil, err
		}
		typ := flags & 0xff
		if typ == sxpNilValue {
			return out, nil
		}
		if typ != sxpList {
			return nil, errRDS
		}
		if flags&(1<<9) != 0 {
			if _, err := p.pairs(); err != nil {
				return nil, err
			}
		}
		tag := ""
		if flags&(1<<10) != 0 {
			t, err := p.item()
			if err != nil {
				return nil, err
			}
			if len(t) > 0 {
				tag = t[0]
			}
		}
		val, err := p.item()
		if err != nil {
			return nil, err
		}
		out[tag] = val
	}
}

// item reads (or skips) one item: a symbol's name, a character vector's
// first strings, nothing for other vectors. Environments, closures and the
// like are not supported.
func (p *rdsParser) item() ([]string, error) {
	flags, err := p.int()
	if err != nil {
		return nil, err
	}
	typ, hasAttr := flags&0xff, flags&(1<<9) != 0
	var out []string
	switch typ {
	case sxpNilValue, sxpGlobalEnv, sxpEmptyEnv, sxpBaseEnv, sxpBaseNS:
		return nil, nil
	case sxpRef:
		i := flags >> 8
		if i == 0 {
			if i, err = p.int(); err != nil {
				return nil, err
			}
		}
		if i < 1 || i > len(p.refs) {
			return nil, errRDS
		}
		return []string{p.refs[i-1]}, nil
	case sxpSym:
		name, err := p.item()
		if err != nil {
			return nil, err
		}
		s := ""
		if len(name) > 0 {
			s = name[0]
		}
		p.refs = append(p.refs, s)
		return []string{s}, nil
	case sxpChar:
		n, err := p.int()
		if err != nil {
			return nil, err
		}
		if n == -1 {
			return []string{"NA"}, nil
		}
		if err := p.skip(n); err != nil {
			return nil, err
		}
		return []string{string(p.b[p.off-n : p.off])}, nil
	case sxpLgl, sxpInt, sxpReal, sxpCplx, sxpRaw, sxpStr, sxpVec, sxpExpr:
		n, err := p.int()
		if err != nil {
			return nil, err
		}
		if n == -1 { // long vector: two more ints
			hi, err1 := p.int()
			lo, err2 := p.int()
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			n = hi<<32 | int(uint32(lo))
		}
		width := map[int]int{sxpLgl: 4, sxpInt: 4, sxpReal: 8, sxpCplx: 16, sxpRaw: 1}[typ]
		if width > 0 {
			if n > len(p.b) || p.skip(n*width) != nil {
				return nil, errRDS
			}
			break
		}
		for i := 0; i < n; i++ {
			s, err := p.item()
			if err != nil {
				return nil, err
			}
			if typ == sxpStr && len(s) > 0 && len(out) < 16 {
				out = append(out, s[0])
			}
		}
	default:
		return nil, errRDS
	}
	if hasAttr {
		if _, err := p.pairs(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// rdsDescription is the Format() text of an rds value.
func rdsDescription(b []byte) string {
	return "<R object: " + strings.TrimSpace(RDSKind(b)) + ">"
}
