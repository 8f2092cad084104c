package scheduler

import (
	"fmt"
	"sort"
	"sync"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/graph"
)

// Registry holds the executors that step decorators choose, one plugin per
// decorator, each executor made by its plugin when a run first needs it and
// then kept. A step without such a decorator (nor one among --with) runs on
// the run's own executor, Run.Exec: local Rscript processes. The zero value
// and nil are empty registries.
type Registry struct {
	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	plugin Plugin
	mu     sync.Mutex // held while the executor is made
	exec   Executor
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Register makes p the plugin of decorator, which must be known to the graph
// as a decorator that chooses an executor (graph.RegisterDecorator with
// Executor set), so that flows can name it and nothing else selects it.
func (r *Registry) Register(decorator string, p Plugin) error {
	spec, ok := graph.LookupDecorator(decorator)
	if !ok || !spec.Executor {
		return fmt.Errorf("register executor %q: no decorator of that name chooses an executor (graph.RegisterDecorator)", decorator)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.entries[decorator]; dup {
		return fmt.Errorf("register executor %q: it is registered already", decorator)
	}
	if r.entries == nil {
		r.entries = map[string]*entry{}
	}
	r.entries[decorator] = &entry{plugin: p}
	return nil
}

// Plugin returns the plugin registered under decorator.
func (r *Registry) Plugin(decorator string) (Plugin, bool) {
	e := r.lookup(decorator)
	if e == nil {
		return nil, false
	}
	return e.plugin, true
}

// Decorators lists the registered decorators, sorted.
func (r *Registry) Decorators() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.entries))
	for d := range r.entries {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Executor returns the executor of decorator, made on first use, with its
// plugin. Errors are of kind errs.ErrPrecondition unless the plugin's has a
// kind already; a failed make is tried again by the next call.
func (r *Registry) Executor(decorator string) (Executor, Plugin, error) {
	e := r.lookup(decorator)
	if e == nil {
		return nil, nil, errs.Precondition("decorator %q chooses an executor that this engine does not have", decorator)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.exec == nil {
		x, err := e.plugin.NewExecutor()
		if err != nil {
			return nil, e.plugin, errs.MarkIfNone(errs.ErrPrecondition, err)
		}
		e.exec = x
	}
	return e.exec, e.plugin, nil
}

func (r *Registry) lookup(decorator string) *entry {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entries[decorator]
}

// Ready is a plugin whose executor exists already (tests, executors without
// settings).
func Ready(name string, e Executor) Plugin { return ready{name, e} }

type ready struct {
	name string
	exec Executor
}

func (p ready) Name() string                   { return p.name }
func (p ready) NewExecutor() (Executor, error) { return p.exec, nil }
