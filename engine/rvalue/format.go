package rvalue

// This file is long (about 700 lines) with one concern, print()-like
// rendering: the vector, factor, matrix, data frame and list printers share
// its cell, width and padding helpers and R's layout rules, and read best
// together.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Output limits: elements of a vector or list, rows and columns of a table.
const (
	maxElems  = 20
	maxCols   = 12
	lineWidth = 80
)

// Format renders v roughly as R's print() would: atomic vectors with [i]
// labels (or names), factors with their levels, matrices and data frames as
// tables, lists element by element, Dates and POSIXct as times. Long output
// is cut after 20 elements or rows ("... and N more"). Values R could only
// serialize show as <R object: closure> and the like.
func Format(v Value) string {
	var b strings.Builder
	formatValue(&b, v, "")
	return strings.TrimRight(b.String(), "\n")
}

func formatValue(b *strings.Builder, v Value, prefix string) {
	switch {
	case v.Type == Null:
		b.WriteString("NULL\n")
	case v.Type == RDS:
		b.WriteString(rdsDescription(v.RDS) + "\n")
	case v.Type == List && v.Inherits("data.frame"):
		formatDataFrame(b, v)
	case v.Type == List:
		formatList(b, v, prefix)
	case v.Type == Integer && v.Inherits("factor"):
		formatFactor(b, v)
	case len(v.Dim()) == 2:
		formatMatrix(b, v)
		formatExtraAttrs(b, v, "dim", "dimnames")
	default:
		names := v.Names()
		skip := []string{"names"}
		if d := v.Dim(); len(d) == 1 { // 1-d arrays and tables print like named vectors
			if dn, ok := v.Attr("dimnames"); ok && dn.Type == List && len(dn.List) == 1 {
				names = dn.List[0].Strings()
			}
			skip = append(skip, "dim", "dimnames")
		} else if len(v.Dim()) > 2 {
			fmt.Fprintf(b, "<array %s>\n", joinInts(v.Dim(), " x "))
			skip = append(skip, "dim", "dimnames")
		}
		formatVector(b, v, names)
		formatExtraAttrs(b, v, skip...)
	}
}

// formatExtraAttrs prints attributes that the layout did not use, as R does
// (attr(,"name") then the value).
func formatExtraAttrs(b *strings.Builder, v Value, used ...string) {
	for _, a := range v.Attrs {
		skip := false
		for _, u := range used {
			skip = skip || a.Name == u
		}
		if a.Name == "class" && (v.Inherits("Date") || v.Inherits("POSIXct") || v.Inherits("table")) {
			skip = true
		}
		if a.Name == "tzone" && v.Inherits("POSIXct") {
			skip = true
		}
		if skip {
			continue
		}
		fmt.Fprintf(b, "attr(,%s)\n", quote(a.Name))
		formatValue(b, a.Value, "")
	}
}

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, sep)
}

// cells formats elements [0, n) of an atomic vector; numbers share one
// format as in R. quoted: strings get quotes (vectors) or not (tables).
func cells(v Value, n int, quoted bool) []string {
	out := make([]string, n)
	switch {
	case v.Inherits("Date") && (v.Type == Double || v.Type == Integer):
		for i := 0; i < n; i++ {
			out[i] = dateString(numAt(v, i), quoted)
		}
		return out
	case v.Inherits("POSIXct") && (v.Type == Double || v.Type == Integer):
		return posixStrings(v, n, quoted)
	}
	switch v.Type {
	case Logical:
		for i, x := range v.Logical[:n] {
			out[i] = map[bool]string{true: "TRUE", false: "FALSE"}[x != 0]
			if x == NALogical {
				out[i] = "NA"
			}
		}
	case Integer:
		for i, x := range v.Integer[:n] {
			out[i] = "NA"
			if x != NAInteger {
				out[i] = strconv.Itoa(int(x))
			}
		}
	case Double:
		return formatReals(v.Double[:n])
	case Complex:
		re, im := make([]float64, n), make([]float64, n)
		for i, c := range v.Complex[:n] {
			re[i], im[i] = real(c), math.Abs(imag(c))
		}
		rs, is := formatReals(re), formatReals(im)
		for i, c := range v.Complex[:n] {
			sign := "+"
			if math.Signbit(imag(c)) && !math.IsNaN(imag(c)) {
				sign = "-"
			}
			out[i] = rs[i] + sign + is[i] + "i"
			if IsNA(real(c)) || IsNA(imag(c)) {
				out[i] = "NA"
			}
		}
	case Character:
		for i, s := range v.Character[:n] {
			switch {
			case s.NA && quoted:
				out[i] = "NA"
			case s.NA:
				out[i] = "<NA>"
			case quoted:
				out[i] = quote(s.S)
			default:
				out[i] = s.S
			}
		}
	case Raw:
		for i, x := range v.Raw[:n] {
			out[i] = fmt.Sprintf("%02x", x)
		}
	}
	return out
}

func numAt(v Value, i int) float64 {
	if v.Type == Integer {
		if v.Integer[i] == NAInteger {
			return NAReal
		}
		return float64(v.Integer[i])
	}
	return v.Double[i]
}

func dateString(days float64, quoted bool) string {
	if math.IsNaN(days) || math.IsInf(days, 0) {
		return "NA"
	}
	s := time.Unix(int64(math.Floor(days))*86400, 0).UTC().Format("2006-01-02")
	if quoted {
		return strconv.Quote(s)
	}
	return s
}

// posixStrings formats POSIXct seconds in the tzone attribute's zone, with
// R's choice of layout: dates only when every time is midnight, no seconds
// when all are whole minutes.
func posixStrings(v Value, n int, quoted bool) []string {
	loc := time.Local
	if tz, ok := v.Attr("tzone"); ok && tz.Type == Character && len(tz.Character) > 0 && tz.Character[0].S != "" {
		if l, err := time.LoadLocation(tz.Character[0].S); err == nil {
			loc = l
		}
	}
	times := make([]*time.Time, n)
	layout := "2006-01-02"
	for i := 0; i < n; i++ {
		x := numAt(v, i)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		t := time.Unix(int64(math.Floor(x)), 0).In(loc)
		times[i] = &t
		switch {
		case t.Second() != 0:
			layout = "2006-01-02 15:04:05"
		case (t.Hour() != 0 || t.Minute() != 0) && layout == "2006-01-02":
			layout = "2006-01-02 15:04"
		}
	}
	out := make([]string, n)
	for i, t := range times {
		if t == nil {
			out[i] = "NA"
			continue
		}
		out[i] = t.Format(layout + " MST")
		if quoted {
			out[i] = strconv.Quote(out[i])
		}
	}
	return out
}

// formatReals gives doubles R's print() look: up to 7 significant digits,
// one number of decimals for all, scientific notation when it is narrower.
func formatReals(xs []float64) []string {
	out := make([]string, len(xs))
	maxSig, maxRgt, maxLeft, maxExp := 1, 0, 1, 0
	finite := false
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		finite = true
		sig, e := sigDigits(x)
		maxSig = max(maxSig, sig)
		maxRgt = max(maxRgt, sig-1-e)
		left := max(1, e+1)
		if x < 0 {
			left++
		}
		maxLeft = max(maxLeft, left)
		maxExp = max(maxExp, abs(e))
	}
	fixedWidth := maxLeft
	if maxRgt > 0 {
		fixedWidth += 1 + maxRgt
	}
	sciWidth := 1 + 4 // d e+XX
	if maxSig > 1 {
		sciWidth += maxSig
	}
	if maxExp >= 100 {
		sciWidth++
	}
	sci := finite && fixedWidth > sciWidth
	for i, x := range xs {
		switch {
		case IsNA(x):
			out[i] = "NA"
		case math.IsNaN(x):
			out[i] = "NaN"
		case math.IsInf(x, 1):
			out[i] = "Inf"
		case math.IsInf(x, -1):
			out[i] = "-Inf"
		case sci:
			out[i] = strconv.FormatFloat(x+0, 'e', maxSig-1, 64)
		default:
			out[i] = strconv.FormatFloat(x+0, 'f', min(max(maxRgt, 0), 15), 64)
		}
		if x == 0 { // R never prints -0
			out[i] = strings.TrimPrefix(out[i], "-")
		}
	}
	return out
}

// sigDigits is how many of 7 significant digits x needs, and its decimal
// exponent after rounding to them.
func sigDigits(x float64) (int, int) {
	if x == 0 {
		return 1, 0
	}
	s := strconv.FormatFloat(math.Abs(x), 'e', 6, 64) // d.dddddde±XX
	mant, exp, _ := strings.Cut(s, "e")
	e, _ := strconv.Atoi(exp)
	digits := strings.TrimRight(strings.Replace(mant, ".", "", 1), "0")
	return max(1, len(digits)), e
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// quote writes a string as R prints it: double quotes, escapes for quotes,
// backslashes and control characters, UTF-8 kept.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\%03o`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func width(s string) int { return utf8.RuneCountInString(s) }

// at and fit tolerate names attributes shorter than their vector, which a
// hand-made document may have.
func at(ss []string, i int) string {
	if i < len(ss) {
		return ss[i]
	}
	return ""
}

func fit(ss []string, n int) []string {
	out := make([]string, n)
	copy(out, ss)
	return out
}

func pad(s string, w int, right bool) string {
	if n := w - width(s); n > 0 {
		if right {
			return strings.Repeat(" ", n) + s
		}
		return s + strings.Repeat(" ", n)
	}
	return s
}

// formatVector prints an atomic vector: [i] labels, or a names row above
// each row of values.
func formatVector(b *strings.Builder, v Value, names []string) {
	n := v.Len()
	if n == 0 {
		b.WriteString(emptyVector(v) + "\n")
		return
	}
	// Numbers align right; strings (and quoted dates) left, as in R.
	right := v.Type != Character && !v.Inherits("Date") && !v.Inherits("POSIXct")
	writeCells(b, cells(v, min(n, maxElems), true), n, names, right)
}

// writeCells lays out the first formatted elements of a vector of n.
func writeCells(b *strings.Builder, items []string, n int, names []string, right bool) {
	shown := len(items)
	w := 0
	for _, s := range items {
		w = max(w, width(s))
	}
	if names != nil {
		names = fit(names, shown)
		for _, s := range names {
			w = max(w, width(s))
		}
		per := max(1, lineWidth/(w+1))
		for i := 0; i < shown; i += per {
			end := min(shown, i+per)
			var nl, vl strings.Builder
			for j := i; j < end; j++ {
				nl.WriteString(pad(names[j], w, true) + " ")
				vl.WriteString(pad(items[j], w, true) + " ")
			}
			b.WriteString(strings.TrimRight(nl.String(), " ") + "\n")
			b.WriteString(strings.TrimRight(vl.String(), " ") + "\n")
		}
	} else {
		lw := len(fmt.Sprintf("[%d]", shown))
		per := max(1, (lineWidth-lw)/(w+1))
		for i := 0; i < shown; i += per {
			line := pad(fmt.Sprintf("[%d]", i+1), lw, true)
			for j := i; j < min(shown, i+per); j++ {
				line += " " + pad(items[j], w, right)
			}
			b.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	if n > shown {
		fmt.Fprintf(b, "... and %d more\n", n-shown)
	}
}

func emptyVector(v Value) string {
	switch {
	case v.Inherits("factor"):
		return "factor(0)"
	case v.Inherits("Date"):
		return `Date of length 0`
	case v.Type == Double:
		return "numeric(0)"
	}
	return string(v.Type) + "(0)"
}

func formatFactor(b *strings.Builder, v Value) {
	levels := []string{}
	if l, ok := v.Attr("levels"); ok && l.Type == Character {
		levels = l.Strings()
	}
	lv := factorLabels(v)
	if n := lv.Len(); n == 0 {
		b.WriteString("factor(0)\n")
	} else {
		// Labels print unquoted, NA as <NA>.
		writeCells(b, cells(lv, min(n, maxElems), false), n, v.Names(), false)
	}
	sep := " "
	if v.Inherits("ordered") {
		sep = " < "
	}
	shownLevels := levels
	more := ""
	if len(levels) > maxElems {
		shownLevels = levels[:maxElems]
		more = fmt.Sprintf(" ... and %d more", len(levels)-maxElems)
	}
	fmt.Fprintf(b, "Levels: %s%s\n", strings.Join(shownLevels, sep), more)
}

// column is one column of a table: header, cells, alignment.
type column struct {
	header string
	cells  []string
	right  bool
}

func writeTable(b *strings.Builder, rowNames []string, cols []column) {
	rw := 0
	for _, r := range rowNames {
		rw = max(rw, width(r))
	}
	widths := make([]int, len(cols))
	for j, c := range cols {
		widths[j] = width(c.header)
		for _, s := range c.cells {
			widths[j] = max(widths[j], width(s))
		}
	}
	line := strings.Repeat(" ", rw)
	for j, c := range cols {
		line += " " + pad(c.header, widths[j], c.right)
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
	for i, r := range rowNames {
		line := pad(r, rw, false)
		for j, c := range cols {
			line += " " + pad(c.cells[i], widths[j], c.right)
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
}

func formatMatrix(b *strings.Builder, v Value) {
	d := v.Dim()
	nr, nc := d[0], d[1]
	var rowNames, colNames []string
	if dn, ok := v.Attr("dimnames"); ok && dn.Type == List && len(dn.List) == 2 {
		if dn.List[0].Type == Character {
			rowNames = dn.List[0].Strings()
		}
		if dn.List[1].Type == Character {
			colNames = dn.List[1].Strings()
		}
	}
	if nr*nc != v.Len() {
		formatVector(b, v, nil)
		return
	}
	showR, showC := min(nr, maxElems), min(nc, maxCols)
	labels := make([]string, showR)
	for i := range labels {
		labels[i] = fmt.Sprintf("[%d,]", i+1)
		if rowNames != nil {
			labels[i] = at(rowNames, i)
		}
	}
	cols := make([]column, showC)
	for j := 0; j < showC; j++ {
		col := slice(v, j*nr, j*nr+showR)
		cols[j] = column{header: fmt.Sprintf("[,%d]", j+1), cells: cells(col, showR, true), right: v.Type != Character}
		if colNames != nil {
			cols[j].header = at(colNames, j)
		}
	}
	writeTable(b, labels, cols)
	if nr > showR {
		fmt.Fprintf(b, "... and %d more rows\n", nr-showR)
	}
	if nc > showC {
		fmt.Fprintf(b, "... and %d more columns\n", nc-showC)
	}
}

// slice is elements [from, to) of an atomic vector, keeping its class and
// time zone so that Dates and times still format as such.
func slice(v Value, from, to int) Value {
	out := Value{Type: v.Type}
	for _, a := range v.Attrs {
		if a.Name == "class" || a.Name == "tzone" {
			out.Attrs = append(out.Attrs, a)
		}
	}
	switch v.Type {
	case Logical:
		out.Logical = v.Logical[from:to]
	case Integer:
		out.Integer = v.Integer[from:to]
	case Double:
		out.Double = v.Double[from:to]
	case Complex:
		out.Complex = v.Complex[from:to]
	case Character:
		out.Character = v.Character[from:to]
	case Raw:
		out.Raw = v.Raw[from:to]
	case List:
		out.List = v.List[from:to]
	}
	return out
}

// dataFrameRows is the row count and row names of a data frame; R stores
// automatic row names compactly as c(NA, -n).
func dataFrameRows(v Value) (int, []string) {
	rn, ok := v.Attr("row.names")
	if !ok {
		if len(v.List) > 0 {
			return v.List[0].Len(), nil
		}
		return 0, nil
	}
	switch rn.Type {
	case Integer:
		if len(rn.Integer) == 2 && rn.Integer[0] == NAInteger {
			return abs(int(rn.Integer[1])), nil
		}
		names := make([]string, len(rn.Integer))
		for i, x := range rn.Integer {
			names[i] = strconv.Itoa(int(x))
		}
		return len(names), names
	case Double:
		return len(rn.Double), formatReals(rn.Double)
	case Character:
		return len(rn.Character), rn.Strings()
	}
	return rn.Len(), nil
}

func formatDataFrame(b *strings.Builder, v Value) {
	nrow, rowNames := dataFrameRows(v)
	names := v.Names()
	if len(v.List) == 0 {
		fmt.Fprintf(b, "data frame with 0 columns and %d rows\n", nrow)
		return
	}
	if nrow == 0 {
		fmt.Fprintf(b, "[1] %s\n<0 rows> (or 0-length row.names)\n", strings.Join(names, " "))
		return
	}
	shown := min(nrow, maxElems)
	labels := make([]string, shown)
	for i := range labels {
		labels[i] = strconv.Itoa(i + 1)
		if rowNames != nil && i < len(rowNames) {
			labels[i] = rowNames[i]
		}
	}
	showC := min(len(v.List), maxCols)
	cols := make([]column, showC)
	for j := 0; j < showC; j++ {
		c := v.List[j]
		cols[j] = column{header: fmt.Sprintf("V%d", j+1), right: true}
		if j < len(names) {
			cols[j].header = names[j]
		}
		switch {
		case c.Type == Integer && c.Inherits("factor"):
			lv := factorLabels(c)
			cols[j].cells = cells(lv, min(shown, lv.Len()), false)
		case c.Type == List || c.Type == RDS || c.Type == Null || len(c.Dim()) > 1:
			cols[j].cells = make([]string, shown)
			for i := range cols[j].cells {
				cols[j].cells[i] = "<" + string(c.Type) + ">"
			}
		default:
			cols[j].cells = cells(c, min(shown, c.Len()), false)
		}
		for len(cols[j].cells) < shown {
			cols[j].cells = append(cols[j].cells, "")
		}
	}
	writeTable(b, labels, cols)
	if nrow > shown {
		fmt.Fprintf(b, "... and %d more rows\n", nrow-shown)
	}
	if len(v.List) > showC {
		fmt.Fprintf(b, "... and %d more columns: %s\n", len(v.List)-showC,
			strings.Join(names[min(showC, len(names)):], ", "))
	}
}

func factorLabels(v Value) Value {
	var levels []string
	if l, ok := v.Attr("levels"); ok && l.Type == Character {
		levels = l.Strings()
	}
	out := Value{Type: Character, Character: make([]Str, len(v.Integer))}
	for i, code := range v.Integer {
		if code == NAInteger || code < 1 || int(code) > len(levels) {
			out.Character[i] = Str{NA: true}
		} else {
			out.Character[i] = Str{S: levels[code-1]}
		}
	}
	return out
}

// formatList prints elements under $name / [[i]] headers, nested lists
// with the full path, as R does.
func formatList(b *strings.Builder, v Value, prefix string) {
	names := v.Names()
	if len(v.List) == 0 {
		if names != nil {
			b.WriteString("named list()\n")
		} else {
			b.WriteString("list()\n")
		}
		formatExtraAttrs(b, v, "names")
		return
	}
	shown := min(len(v.List), maxElems)
	for i := 0; i < shown; i++ {
		tag := fmt.Sprintf("%s[[%d]]", prefix, i+1)
		if i < len(names) && names[i] != "" && names[i] != "NA" {
			tag = prefix + "$" + rName(names[i])
		}
		b.WriteString(tag + "\n")
		el := v.List[i]
		if el.Type == List && !el.Inherits("data.frame") && len(el.List) > 0 {
			formatList(b, el, tag)
		} else {
			formatValue(b, el, tag)
			b.WriteString("\n")
		}
	}
	if len(v.List) > shown {
		fmt.Fprintf(b, "... and %d more elements\n\n", len(v.List)-shown)
	}
	formatExtraAttrs(b, v, "names")
}

// rName backquotes names that are not syntactic, as R's $ printing does.
func rName(s string) string {
	ok := s != ""
	for i, r := range s {
		alpha := r == '.' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || r > 127
		digit := r >= '0' && r <= '9'
		if (i == 0 && !(alpha && r != '_')) || (!alpha && !digit) {
			ok = false
		}
	}
	if ok {
		return s
	}
	return "`" + s + "`"
}
