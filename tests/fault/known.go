package main

import "strings"

// knownFailures are invariant failures in areas other changes are fixing.
// The suite reports them ("known failure NAME") without failing; once the
// fix is merged, FAULT_STRICT=NAME (or all) makes them fail the suite, and
// the entry goes away.
var knownFailures = map[string]string{}

// knownAs marks a problem as the known failure name.
func knownAs(name, problem string) string { return "known(" + name + "): " + problem }

// classify returns the known failure a problem was marked as.
func classify(problem string) (string, bool) {
	rest, ok := strings.CutPrefix(problem, "known(")
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, "): ")
	if _, known := knownFailures[name]; !ok || !known {
		return "", false
	}
	return name, true
}
