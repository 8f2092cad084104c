package batch

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var batchName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

func TestJobNameRoundTrip(t *testing.T) {
	long := strings.Repeat("VeryLongStepName", 10)
	tests := []struct {
		name string
		l    Labels
		want string // "" to only check the round trip
		cut  bool
	}{
		{"plain", Labels{Flow: "ForeachFlowR", User: "savin", Run: "15", Step: "start", Task: "1"}, "mf-ForeachFlowR-savin-15-start-1-0", false},
		{"dots and underscores", Labels{Flow: "Big_Sum", User: "john.doe", Run: "7", Step: "a.b", Task: "3", Attempt: 2}, "mf-Big_5FSum-john_2Edoe-7-a_2Eb-3-2", false},
		{"separator inside a field", Labels{Flow: "a-b", User: "c", Run: "1", Step: "s", Task: "1"}, "mf-a_2Db-c-1-s-1-0", false},
		{"non-ASCII", Labels{Flow: "Flöw", User: "ü ser", Run: "1", Step: "s", Task: "1"}, "", false},
		{"empty fields", Labels{Flow: "F"}, "mf-F-----0", false},
		{"too long", Labels{Flow: "F", User: "u", Run: "1", Step: long, Task: "9"}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := JobName(tc.l)
			if !batchName.MatchString(got) {
				t.Fatalf("JobName = %q: not a valid Batch job name", got)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("JobName = %q, want %q", got, tc.want)
			}
			l, err := ParseJobName(got)
			if tc.cut {
				if len(got) != maxNameLen || !errors.Is(err, ErrNameCut) {
					t.Fatalf("cut name %q (len %d): err %v, want ErrNameCut", got, len(got), err)
				}
				// The full identity survives in the key tag.
				if l, err := parseKey(labelTags(tc.l)[TagJobKey]); err != nil || l != tc.l {
					t.Errorf("key tag parses to %+v, %v", l, err)
				}
				return
			}
			if err != nil || l != tc.l {
				t.Errorf("ParseJobName(%q) = %+v, %v; want %+v", got, l, err, tc.l)
			}
		})
	}
}

func TestCutNamesDiffer(t *testing.T) {
	base := Labels{Flow: "F", User: "u", Run: "1", Step: strings.Repeat("s", 200)}
	a, b := base, base
	a.Task, b.Task = "1", "2"
	if JobName(a) == JobName(b) {
		t.Fatal("two tasks got the same cut name")
	}
}

func TestParseJobNameRejects(t *testing.T) {
	for _, name := range []string{
		"t1",
		"mf-F-u-1-s-1",      // 6 fields
		"mf-F-u-1-s-1-x",    // attempt not a number
		"mf-F_4-u-1-s-1-0",  // truncated escape
		"mf-F_ZZ-u-1-s-1-0", // bad hex
		"mf-F_41-u-1-s-1-0", // "A" escaped: not canonical
		"mf-F_2e-u-1-s-1-0", // lower-case hex: not canonical
		"xx-F-u-1-s-1-0",    // not ours
		"mf-F-u-1-s-1-0-0",  // 8 fields
		"MF-F-u-1-s-1-0",    // prefix is case-sensitive
	} {
		if l, err := ParseJobName(name); err == nil {
			t.Errorf("ParseJobName(%q) = %+v, want an error", name, l)
		}
	}
}

func TestNamePatternAndMatch(t *testing.T) {
	mine := Labels{Flow: "Flow", User: "savin", Run: "15", Step: "start", Task: "1"}
	tests := []struct {
		f       ListFilter
		pattern string
		match   map[Labels]bool
	}{
		{ListFilter{Flow: "Flow"}, "mf-Flow-*", map[Labels]bool{
			mine: true, {Flow: "Flow", User: "other", Run: "3"}: true, {Flow: "Flow2", User: "savin", Run: "15"}: false, {Flow: "flow", User: "savin", Run: "15"}: false}},
		{ListFilter{Flow: "Flow", User: "savin"}, "mf-Flow-savin-*", map[Labels]bool{
			mine: true, {Flow: "Flow", User: "savin2", Run: "15"}: false, {Flow: "Flow", User: "other", Run: "15"}: false}},
		{ListFilter{Flow: "Flow", User: "savin", Run: "15"}, "mf-Flow-savin-15-*", map[Labels]bool{
			mine: true, {Flow: "Flow", User: "savin", Run: "150"}: false}},
		// A run without a user: the run is after the user in the name, so
		// the server filter stops at the flow and Match does the rest.
		{ListFilter{Flow: "Flow", Run: "15"}, "mf-Flow-*", map[Labels]bool{
			mine: true, {Flow: "Flow", User: "other", Run: "15"}: true, {Flow: "Flow", User: "savin", Run: "16"}: false}},
	}
	for _, tc := range tests {
		if got := namePattern(tc.f); got != tc.pattern {
			t.Errorf("namePattern(%+v) = %q, want %q", tc.f, got, tc.pattern)
		}
		prefix := strings.TrimSuffix(tc.pattern, "*")
		for l, want := range tc.match {
			if got := tc.f.Match(l); got != want {
				t.Errorf("%+v.Match(%+v) = %v, want %v", tc.f, l, got, want)
			}
			// Everything Match accepts must pass the server's prefix filter.
			if want && !strings.HasPrefix(strings.ToLower(JobName(l)), strings.ToLower(prefix)) {
				t.Errorf("name %q of a match does not start with %q", JobName(l), prefix)
			}
		}
	}
	long := ListFilter{Flow: strings.Repeat("F", 300), User: "u"}
	if p := namePattern(long); len(p) != keepLen+1 {
		t.Errorf("pattern for a long flow has length %d, want %d", len(p), keepLen+1)
	}
}

func TestTagValue(t *testing.T) {
	for in, want := range map[string]string{
		"savin":        "savin",
		"john.doe@x":   "john.doe@x",
		"a b:c/d=e+f-": "a b:c/d=e+f-",
		"a#b":          "a_b",
		"ö":            "__",
	} {
		if got := tagValue(in); got != want {
			t.Errorf("tagValue(%q) = %q, want %q", in, got, want)
		}
	}
}
