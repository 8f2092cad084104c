package graph

import (
	"strings"
	"sync"
	"testing"
)

func s(name string, next ...string) Step { return Step{Name: name, Next: next} }

func TestValidGraphs(t *testing.T) {
	cases := []struct {
		name   string
		steps  []Step
		order  string
		closes map[string]string
	}{
		{"linear", []Step{s("start", "a"), s("a", "end"), s("end")}, "start,a,end", nil},
		{"branch", []Step{s("start", "a", "b"), s("a", "j"), s("b", "j"), {Name: "j", Next: []string{"end"}, Join: true}, s("end")},
			"start,a,b,j,end", map[string]string{"j": "start"}},
		{"foreach", []Step{{Name: "start", Next: []string{"w"}, Foreach: "xs"}, s("w", "j"), {Name: "j", Next: []string{"end"}, Join: true}, s("end")},
			"start,w,j,end", map[string]string{"j": "start"}},
		{"nested foreach", []Step{
			{Name: "start", Next: []string{"outer"}, Foreach: "xs"},
			{Name: "outer", Next: []string{"inner"}, Foreach: "ys"},
			s("inner", "j1"),
			{Name: "j1", Next: []string{"j2"}, Join: true},
			{Name: "j2", Next: []string{"end"}, Join: true},
			s("end"),
		}, "start,outer,inner,j1,j2,end", map[string]string{"j1": "outer", "j2": "start"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := New("Flow", c.steps)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(g.Order, ","); got != c.order {
				t.Fatalf("order %s, want %s", got, c.order)
			}
			for j, split := range c.closes {
				if g.Closes[j] != split {
					t.Fatalf("%s closes %q, want %q", j, g.Closes[j], split)
				}
			}
		})
	}
}

func TestInvalidGraphs(t *testing.T) {
	join := func(name string, next ...string) Step { return Step{Name: name, Next: next, Join: true} }
	cases := []struct {
		name  string
		steps []Step
		want  string
	}{
		{"no start", []Step{s("a", "end"), s("end")}, `no "start" step`},
		{"no end", []Step{s("start", "a"), s("a")}, `no "end" step`},
		{"unknown next", []Step{s("start", "nope"), s("end")}, `next_step "nope", which is not a step`},
		{"cycle", []Step{s("start", "a"), s("a", "b"), s("b", "a", "end"), s("end")}, "cycle"},
		{"unreachable", []Step{s("start", "end"), s("lost", "end"), s("end")}, `"lost" is unreachable`},
		{"duplicate", []Step{s("start", "end"), s("start", "end"), s("end")}, `duplicate step name "start"`},
		{"join one parent", []Step{s("start", "a", "b"), s("a", "j"), s("b", "k"), join("j", "k"), join("k", "end"), s("end")}, "has only one parent"},
		{"join without split", []Step{s("start", "j"), join("j", "end"), s("end")}, "does not close any branch"},
		{"merge without join", []Step{s("start", "a", "b"), s("a", "c"), s("b", "c"), s("c", "end"), s("end")}, "add join = TRUE"},
		{"unjoined", []Step{s("start", "a", "b"), s("a", "end"), s("b", "end"), s("end")}, "add join = TRUE"},
		{"end with next", []Step{s("start", "end"), s("end", "start")}, "must not have a next step"},
		{"bad step name", []Step{s("start", "end"), s("end"), s("my step", "end")}, "invalid step name"},
		{"unknown decorator", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "gpu_magic"}}}, s("end")}, `unknown decorator "gpu_magic"`},
		{"negative memory", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "resources", Args: map[string]string{"memory": "-1"}}}}, s("end")}, "memory = \"-1\": must be a positive number"},
		{"text cpu", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "resources", Args: map[string]string{"cpu": "a"}}}}, s("end")}, "cpu = \"a\": must be a positive number"},
		{"unknown arg", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "retry", Args: map[string]string{"tims": "3"}}}}, s("end")}, `has no argument "tims"`},
		{"bad env name", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "environment", Args: map[string]string{"A B": "1"}}}}, s("end")}, "not a valid environment variable name"},
		{"foreach into join", []Step{{Name: "start", Next: []string{"j"}, Foreach: "xs"}, join("j", "end"), s("end")}, "goes straight to join step"},
		{"foreach two next", []Step{{Name: "start", Next: []string{"a", "b"}, Foreach: "xs"}, s("a", "end"), s("b", "end"), s("end")}, "exactly one next_step"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New("Flow", c.steps)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error must be one line: %q", err)
			}
		})
	}
}

// registerTestDecorators registers once per process (go test -count=N).
var registerTestDecorators sync.Once

// Registered decorators are validated like the built-in ones; unknown ones
// are refused with the same message, now listing the registered ones.
func TestRegisteredDecorators(t *testing.T) {
	registerTestDecorators.Do(func() {
		RegisterDecorator(DecoratorSpec{Name: "graphtest_exec", Executor: true, Args: map[string]ArgKind{"pods": ArgPosInt, "ns": ArgText}})
		RegisterDecorator(DecoratorSpec{Name: "graphtest_other", Executor: true})
	})
	with := func(ds ...Decorator) []Step {
		return []Step{{Name: "start", Next: []string{"end"}, Decorators: ds}, s("end")}
	}
	for _, c := range []struct {
		name  string
		steps []Step
		want  string // "" : valid
	}{
		{"registered", with(Decorator{Name: "graphtest_exec", Args: map[string]string{"pods": "2", "ns": "ml"}}), ""},
		{"with a built-in one", with(Decorator{Name: "graphtest_exec"}, Decorator{Name: "retry"}), ""},
		{"bad argument", with(Decorator{Name: "graphtest_exec", Args: map[string]string{"pods": "0"}}), `step "start": decorator "graphtest_exec" argument pods = "0": must be a whole number >= 1`},
		{"unknown argument", with(Decorator{Name: "graphtest_exec", Args: map[string]string{"cpu": "2"}}), `step "start": decorator "graphtest_exec" has no argument "cpu"`},
		{"two executors", with(Decorator{Name: "graphtest_exec"}, Decorator{Name: "graphtest_other"}), `step "start": decorators "graphtest_exec" and "graphtest_other" both choose where the step runs: keep one`},
		{"unknown", with(Decorator{Name: "gpu_magic"}), `step "start": unknown decorator "gpu_magic": use one of catch, environment, graphtest_exec, graphtest_other, resources, retry, timeout`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New("Flow", c.steps)
			if c.want == "" && err != nil || c.want != "" && (err == nil || err.Error() != c.want) {
				t.Fatalf("New = %v, want %q", err, c.want)
			}
		})
	}
	if spec, ok := LookupDecorator("graphtest_exec"); !ok || !spec.Executor || spec.Args["pods"] != ArgPosInt {
		t.Errorf("LookupDecorator = %+v, %v", spec, ok)
	}
	if spec, ok := LookupDecorator("retry"); !ok || spec.Executor {
		t.Errorf("LookupDecorator(retry) = %+v, %v", spec, ok)
	}
	for _, bad := range []DecoratorSpec{
		{Name: "retry"},          // taken
		{Name: "graphtest_exec"}, // registered above
		{Name: "not valid"},
		{Name: "graphtest_kind", Args: map[string]ArgKind{"x": "huge"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterDecorator(%+v) did not panic", bad)
				}
			}()
			RegisterDecorator(bad)
		}()
	}
}
