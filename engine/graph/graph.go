// Package graph holds a flow's step graph, validates it and works out which
// split each join closes, so the scheduler can match join inputs.
package graph

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// Decorator is a step decorator with its arguments as given by the user.
type Decorator struct {
	Name string
	Args map[string]string
}

// Step is one node of the flow graph.
type Step struct {
	Name       string
	Next       []string
	Foreach    string
	Join       bool
	Decorators []Decorator
}

// Graph is a validated flow graph.
type Graph struct {
	Flow  string
	Steps map[string]*Step
	// Order is a deterministic topological order starting at "start".
	Order []string
	// Parents lists each step's parent steps, in Order.
	Parents map[string][]string
	// Closes maps a join step to the split step whose branches it joins.
	Closes map[string]string
}

var identRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidName reports whether s can name a flow, step or parameter.
func ValidName(s string) bool { return identRe.MatchString(s) }

// New validates steps and builds the graph. Errors name the problem and the
// fix, and are of kind errs.ErrInvalid.
func New(flow string, steps []Step) (*Graph, error) {
	g, err := build(flow, steps)
	if err != nil {
		return nil, errs.Mark(errs.ErrInvalid, err)
	}
	return g, nil
}

func build(flow string, steps []Step) (*Graph, error) {
	if !ValidName(flow) {
		return nil, fmt.Errorf("invalid flow name %q: use letters, digits and _ , starting with a letter", flow)
	}
	g := &Graph{Flow: flow, Steps: map[string]*Step{}, Parents: map[string][]string{}, Closes: map[string]string{}}
	var names []string
	for i := range steps {
		s := steps[i]
		if !ValidName(s.Name) {
			return nil, fmt.Errorf("invalid step name %q: use letters, digits and _ , starting with a letter", s.Name)
		}
		if _, dup := g.Steps[s.Name]; dup {
			return nil, fmt.Errorf("duplicate step name %q: each step() needs a unique name", s.Name)
		}
		g.Steps[s.Name] = &s
		names = append(names, s.Name)
	}
	for _, must := range []string{"start", "end"} {
		if _, ok := g.Steps[must]; !ok {
			return nil, fmt.Errorf("the flow has no %q step: every flow needs a step named \"start\" and one named \"end\"", must)
		}
	}
	if len(g.Steps["end"].Next) > 0 {
		return nil, fmt.Errorf("step \"end\" has next_step %v: the end step must not have a next step", g.Steps["end"].Next)
	}
	for _, n := range names {
		s := g.Steps[n]
		if n != "end" && len(s.Next) == 0 {
			return nil, fmt.Errorf("step %q has no next_step: every step but \"end\" must name its next step(s)", n)
		}
		seen := map[string]bool{}
		for _, nx := range s.Next {
			if _, ok := g.Steps[nx]; !ok {
				return nil, fmt.Errorf("step %q has next_step %q, which is not a step of the flow: define it with step(step = %q, ...) or fix the name", n, nx, nx)
			}
			if seen[nx] {
				return nil, fmt.Errorf("step %q names next_step %q twice", n, nx)
			}
			seen[nx] = true
			if nx == "start" {
				return nil, fmt.Errorf("step %q goes back to \"start\": the graph must not have cycles", n)
			}
			g.Parents[nx] = append(g.Parents[nx], n)
		}
		if s.Foreach != "" {
			if len(s.Next) != 1 {
				return nil, fmt.Errorf("foreach step %q must have exactly one next_step, got %d", n, len(s.Next))
			}
			if nx := g.Steps[s.Next[0]]; nx.Join {
				return nil, fmt.Errorf("foreach step %q goes straight to join step %q: add a step between them that processes each split", n, nx.Name)
			}
			if !ValidName(s.Foreach) {
				return nil, fmt.Errorf("step %q: foreach = %q is not a valid artifact name", n, s.Foreach)
			}
		}
		if err := validateDecorators(n, s.Decorators); err != nil {
			return nil, err
		}
	}
	if err := g.order(names); err != nil {
		return nil, err
	}
	if err := g.matchJoins(); err != nil {
		return nil, err
	}
	return g, nil
}

// order computes a topological order (Kahn, ties broken by definition order)
// and rejects cycles and unreachable steps.
func (g *Graph) order(names []string) error {
	reach := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if reach[n] {
			return
		}
		reach[n] = true
		for _, nx := range g.Steps[n].Next {
			visit(nx)
		}
	}
	visit("start")
	for _, n := range names {
		if !reach[n] {
			return fmt.Errorf("step %q is unreachable from \"start\": connect it with next_step or remove it", n)
		}
	}
	indeg := map[string]int{}
	for _, n := range names {
		indeg[n] = len(g.Parents[n])
	}
	pos := map[string]int{}
	for i, n := range names {
		pos[n] = i
	}
	ready := []string{}
	for _, n := range names {
		if indeg[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		sort.SliceStable(ready, func(i, j int) bool { return pos[ready[i]] < pos[ready[j]] })
		n := ready[0]
		ready = ready[1:]
		g.Order = append(g.Order, n)
		for _, nx := range g.Steps[n].Next {
			indeg[nx]--
			if indeg[nx] == 0 {
				ready = append(ready, nx)
			}
		}
	}
	if len(g.Order) != len(names) {
		var cyc []string
		for _, n := range names {
			if indeg[n] > 0 {
				cyc = append(cyc, n)
			}
		}
		return fmt.Errorf("the graph has a cycle through steps %s: next_step must always lead towards \"end\"", strings.Join(cyc, ", "))
	}
	if g.Order[0] != "start" {
		return fmt.Errorf("step %q has no parent but is not \"start\"", g.Order[0])
	}
	return nil
}

// matchJoins walks the graph with a stack of open splits and checks that every
// join closes one split and that no branch leaves a split unjoined.
func (g *Graph) matchJoins() error {
	stacks := map[string][]string{"start": nil}
	for _, n := range g.Order {
		s := g.Steps[n]
		stack, ok := stacks[n]
		if !ok {
			return fmt.Errorf("internal: step %q not reached", n)
		}
		if s.Join {
			if len(stack) == 0 {
				return fmt.Errorf("join step %q does not close any branch or foreach: remove join = TRUE or add a split before it", n)
			}
			split := stack[len(stack)-1]
			parents := g.Parents[n]
			if g.Steps[split].Foreach == "" && len(parents) < 2 {
				return fmt.Errorf("join step %q has only one parent (%s): a join needs two or more branches (next_step = c(...)) or a foreach before it", n, strings.Join(parents, ", "))
			}
			g.Closes[n] = split
			stack = stack[:len(stack)-1]
		} else if len(g.Parents[n]) > 1 {
			return fmt.Errorf("step %q has several parents (%s) but is not a join: add join = TRUE to step %q", n, strings.Join(g.Parents[n], ", "), n)
		}
		out := stack
		if len(s.Next) > 1 || s.Foreach != "" {
			out = append(append([]string{}, stack...), n)
		}
		for _, nx := range s.Next {
			if prev, seen := stacks[nx]; seen {
				if strings.Join(prev, "/") != strings.Join(out, "/") {
					return fmt.Errorf("step %q is reached from branches of different splits: join each split before merging", nx)
				}
				continue
			}
			stacks[nx] = out
		}
	}
	if len(stacks["end"]) != 0 {
		return fmt.Errorf("split at step %q is never joined: add a step with join = TRUE before \"end\"", stacks["end"][len(stacks["end"])-1])
	}
	return nil
}

// ArgKind is what values a decorator argument accepts.
type ArgKind string

// Argument kinds.
const (
	ArgPosNum    ArgKind = "posnum"    // a number > 0
	ArgNonNegNum ArgKind = "nonnegnum" // a number >= 0
	ArgPosInt    ArgKind = "posint"    // a whole number >= 1
	ArgNonNegInt ArgKind = "nonnegint" // a whole number >= 0
	ArgPercent   ArgKind = "percent"   // a whole number from 0 to 100
	ArgText      ArgKind = "text"      // a non-empty name without spaces
	ArgBool      ArgKind = "bool"      // TRUE, FALSE, true or false
	ArgName      ArgKind = "name"      // a valid artifact name
)

// DecoratorSpec is a decorator the graph accepts: its name and arguments.
type DecoratorSpec struct {
	Name string
	Args map[string]ArgKind
	// Executor marks a decorator that chooses where its step runs: the
	// scheduler runs the step on the executor registered under Name (see
	// scheduler.Registry). A step has at most one.
	Executor bool
}

// The decorators every engine knows. Executors add their own with
// RegisterDecorator (the batch package registers "batch").
var (
	decoratorsMu sync.RWMutex
	decorators   = map[string]DecoratorSpec{
		"resources":   {Name: "resources", Args: map[string]ArgKind{"cpu": ArgPosNum, "memory": ArgPosNum, "gpu": ArgNonNegInt, "shared_memory": ArgPosNum, "disk": ArgPosNum}},
		"retry":       {Name: "retry", Args: map[string]ArgKind{"times": ArgNonNegInt, "minutes_between_retries": ArgNonNegNum}},
		"catch":       {Name: "catch", Args: map[string]ArgKind{"var": ArgName, "print_exception": ArgBool}},
		"timeout":     {Name: "timeout", Args: map[string]ArgKind{"seconds": ArgNonNegNum, "minutes": ArgNonNegNum, "hours": ArgNonNegNum}},
		"environment": {Name: "environment"}, // arguments are variable names (R flattens vars = list(...))
	}
)

// RegisterDecorator makes the graph accept a decorator (typically from an
// executor package's init). It panics when the name is not a valid name or is
// registered already, or an argument kind is unknown: those are programming
// errors, as with database/sql.Register.
func RegisterDecorator(spec DecoratorSpec) {
	if !ValidName(spec.Name) {
		panic(fmt.Sprintf("graph: RegisterDecorator: invalid decorator name %q", spec.Name))
	}
	for arg, kind := range spec.Args {
		if err := checkKind(kind, ""); errors.Is(err, errUnknownKind) {
			panic(fmt.Sprintf("graph: RegisterDecorator %q: argument %s has unknown kind %q", spec.Name, arg, kind))
		}
	}
	decoratorsMu.Lock()
	defer decoratorsMu.Unlock()
	if _, dup := decorators[spec.Name]; dup {
		panic(fmt.Sprintf("graph: RegisterDecorator: decorator %q is registered already", spec.Name))
	}
	decorators[spec.Name] = spec
}

// LookupDecorator returns the spec of a known decorator.
func LookupDecorator(name string) (DecoratorSpec, bool) {
	decoratorsMu.RLock()
	defer decoratorsMu.RUnlock()
	spec, ok := decorators[name]
	return spec, ok
}

// ValidateDecorator checks one decorator (used for --with too).
func ValidateDecorator(step string, d Decorator) error {
	if err := validateDecorators(step, []Decorator{d}); err != nil {
		return errs.Mark(errs.ErrInvalid, err)
	}
	return nil
}

func validateDecorators(step string, ds []Decorator) error {
	where := fmt.Sprintf("step %q", step)
	if step == "" {
		where = "--with"
	}
	seen := map[string]bool{}
	executor := ""
	for _, d := range ds {
		spec, ok := LookupDecorator(d.Name)
		if !ok {
			return fmt.Errorf("%s: unknown decorator %q: use one of %s", where, d.Name, strings.Join(KnownDecoratorNames(), ", "))
		}
		if seen[d.Name] {
			return fmt.Errorf("%s: decorator %q given twice", where, d.Name)
		}
		seen[d.Name] = true
		if spec.Executor {
			if executor != "" {
				return fmt.Errorf("%s: decorators %q and %q both choose where the step runs: keep one", where, executor, d.Name)
			}
			executor = d.Name
		}
		keys := make([]string, 0, len(d.Args))
		for k := range d.Args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := d.Args[k]
			kind, ok := spec.Args[k]
			if d.Name == "environment" {
				if !envNameRe.MatchString(k) {
					return fmt.Errorf("%s: decorator \"environment\": %q is not a valid environment variable name", where, k)
				}
				continue
			}
			if !ok {
				return fmt.Errorf("%s: decorator %q has no argument %q", where, d.Name, k)
			}
			if err := checkKind(kind, v); err != nil {
				return fmt.Errorf("%s: decorator %q argument %s = %q: %v", where, d.Name, k, v, err)
			}
		}
	}
	return nil
}

// KnownDecoratorNames lists the decorators in a stable order.
func KnownDecoratorNames() []string {
	decoratorsMu.RLock()
	defer decoratorsMu.RUnlock()
	out := make([]string, 0, len(decorators))
	for k := range decorators {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var errUnknownKind = errors.New("unknown argument kind")

func checkKind(kind ArgKind, v string) error {
	switch kind {
	case ArgPosNum:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			return fmt.Errorf("must be a positive number")
		}
	case ArgNonNegNum:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("must be a number >= 0")
		}
	case ArgNonNegInt:
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			return fmt.Errorf("must be a whole number >= 0")
		}
	case ArgPosInt:
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 {
			return fmt.Errorf("must be a whole number >= 1")
		}
	case ArgPercent:
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 || i > 100 {
			return fmt.Errorf("must be a whole number from 0 to 100")
		}
	case ArgText:
		if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " \t\n\r") {
			return fmt.Errorf("must be a non-empty name without spaces")
		}
	case ArgBool:
		if v != "TRUE" && v != "FALSE" && v != "true" && v != "false" {
			return fmt.Errorf("must be TRUE or FALSE")
		}
	case ArgName:
		if !ValidName(v) {
			return fmt.Errorf("must be a valid artifact name")
		}
	default:
		return fmt.Errorf("%w %q", errUnknownKind, kind)
	}
	return nil
}

// Decorator returns the step's decorator by name, if any.
func (s *Step) Decorator(name string) (Decorator, bool) {
	for _, d := range s.Decorators {
		if d.Name == name {
			return d, true
		}
	}
	return Decorator{}, false
}

// Descendants returns step and every step reachable from it.
func (g *Graph) Descendants(step string) map[string]bool {
	out := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if out[n] {
			return
		}
		out[n] = true
		for _, nx := range g.Steps[n].Next {
			visit(nx)
		}
	}
	visit(step)
	return out
}
