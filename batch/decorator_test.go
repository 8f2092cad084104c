package batch

import (
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/graph"
)

// The batch decorator is valid in flows (with its arguments checked) once
// the package is imported.
func TestBatchDecoratorArgs(t *testing.T) {
	step := func(args map[string]string) []graph.Step {
		return []graph.Step{{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{{Name: "batch", Args: args}}}, {Name: "end"}}
	}
	for _, c := range []struct {
		name string
		args map[string]string
		want string // "" : valid
	}{
		{"size, queue and image", map[string]string{"cpu": "2", "memory": "8000", "gpu": "0", "queue": "q", "image": "rocker/r-ver:4.4.1"}, ""},
		{"fractional cpu", map[string]string{"cpu": "1.5"}, "cpu = \"1.5\": must be a whole number >= 1"},
		{"unknown arg", map[string]string{"cores": "2"}, `has no argument "cores"`},
		{"empty queue", map[string]string{"queue": " "}, "must be a non-empty name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := graph.New("Flow", step(c.args))
			if c.want == "" {
				if err != nil || strings.Join(g.Order, ",") != "start,end" {
					t.Fatalf("New = %v, %v", g, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line containing %q", err, c.want)
			}
		})
	}
	if spec, ok := graph.LookupDecorator(Decorator); !ok || !spec.Executor {
		t.Fatalf("the batch decorator is not registered as an executor decorator: %+v", spec)
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
			d := graph.Decorator{Name: c.deco, Args: map[string]string{c.arg: c.value}}
			_, err := graph.New("Flow", []graph.Step{{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{d}}, graph.Step{Name: "end"}})
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
			if err := graph.ValidateDecorator("", d); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("--with: got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// All of them together, as the R side sends them.
	all := graph.Decorator{Name: "batch", Args: map[string]string{"iam_role": "arn:aws:iam::123456789012:role/step-role",
		"execution_role": "arn:aws:iam::123456789012:role/exec", "shared_memory": "256", "max_swap": "512",
		"swappiness": "10", "memory": "1000"}}
	if _, err := graph.New("Flow", []graph.Step{{Name: "start", Next: []string{"end"}, Decorators: []graph.Decorator{all}}, graph.Step{Name: "end"}}); err != nil {
		t.Fatal(err)
	}
}
