package graph

import (
	"strings"
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
		{"batch decorator", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "batch",
			Args: map[string]string{"cpu": "2", "memory": "8000", "gpu": "0", "queue": "q", "image": "rocker/r-ver:4.4.1"}}}}, s("end")},
			"start,end", nil},
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
		{"batch fractional cpu", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "batch", Args: map[string]string{"cpu": "1.5"}}}}, s("end")}, "cpu = \"1.5\": must be a whole number >= 1"},
		{"batch unknown arg", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "batch", Args: map[string]string{"cores": "2"}}}}, s("end")}, `has no argument "cores"`},
		{"batch empty queue", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{{Name: "batch", Args: map[string]string{"queue": " "}}}}, s("end")}, "must be a non-empty name"},
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

// The batch decorator's IAM roles and Linux parameters (Metaflow's
// batch(iam_role=, execution_role=, shared_memory=, max_swap=, swappiness=))
// and resources(shared_memory=): good values pass, bad ones are refused
// with one line naming the argument, the value and what it must be.
func TestBatchContainerArgs(t *testing.T) {
	cases := []struct {
		deco, arg, value string
		want             string // "" = accepted
	}{
		{"batch", "iam_role", "arn:aws:iam::123456789012:role/step-role", ""},
		{"batch", "execution_role", "arn:aws:iam::123456789012:role/ecsTaskExecutionRole", ""},
		{"batch", "shared_memory", "256", ""},
		{"batch", "max_swap", "0", ""},
		{"batch", "max_swap", "512", ""},
		{"batch", "swappiness", "0", ""},
		{"batch", "swappiness", "100", ""},
		{"resources", "shared_memory", "256", ""},
		{"resources", "shared_memory", "0.5", ""}, // resources' numbers may be fractional, as its cpu
		{"batch", "iam_role", "", `argument iam_role = "": must be a non-empty name without spaces`},
		{"batch", "iam_role", "my role", `argument iam_role = "my role": must be a non-empty name without spaces`},
		{"batch", "execution_role", " ", `argument execution_role = " ": must be a non-empty name without spaces`},
		{"batch", "shared_memory", "0", `argument shared_memory = "0": must be a whole number >= 1`},
		{"batch", "shared_memory", "-64", `argument shared_memory = "-64": must be a whole number >= 1`},
		{"batch", "shared_memory", "1.5", `argument shared_memory = "1.5": must be a whole number >= 1`},
		{"batch", "shared_memory", "lots", `argument shared_memory = "lots": must be a whole number >= 1`},
		{"batch", "max_swap", "-1", `argument max_swap = "-1": must be a whole number >= 0`},
		{"batch", "max_swap", "2.5", `argument max_swap = "2.5": must be a whole number >= 0`},
		{"batch", "swappiness", "101", `argument swappiness = "101": must be a whole number from 0 to 100`},
		{"batch", "swappiness", "-1", `argument swappiness = "-1": must be a whole number from 0 to 100`},
		{"batch", "swappiness", "10.5", `argument swappiness = "10.5": must be a whole number from 0 to 100`},
		{"batch", "swappiness", "high", `argument swappiness = "high": must be a whole number from 0 to 100`},
		{"resources", "shared_memory", "0", `argument shared_memory = "0": must be a positive number`},
		{"resources", "max_swap", "512", `decorator "resources" has no argument "max_swap"`},
	}
	for _, c := range cases {
		t.Run(c.deco+"/"+c.arg+"="+c.value, func(t *testing.T) {
			d := Decorator{Name: c.deco, Args: map[string]string{c.arg: c.value}}
			_, err := New("Flow", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{d}}, s("end")})
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), `step "start": decorator "`+c.deco+`"`) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error must be one line: %q", err)
			}
			// --with batch:... is checked the same way.
			if err := ValidateDecorator("", d); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("--with: got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// All of them together, as the R side sends them.
	all := Decorator{Name: "batch", Args: map[string]string{"iam_role": "arn:aws:iam::123456789012:role/step-role",
		"execution_role": "arn:aws:iam::123456789012:role/exec", "shared_memory": "256", "max_swap": "512",
		"swappiness": "10", "memory": "1000"}}
	if _, err := New("Flow", []Step{{Name: "start", Next: []string{"end"}, Decorators: []Decorator{all}}, s("end")}); err != nil {
		t.Fatal(err)
	}
}
