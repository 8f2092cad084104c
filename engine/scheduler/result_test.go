package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/graph"
)

// quitExec ends every task with status 0 and no result, as an R process
// does when the step calls base::quit().
type quitExec struct{}

func (quitExec) Run(ctx context.Context, l *Launch) (int, error) {
	l.Started(1)
	return 0, nil
}

func TestExitWithoutResultSaysQuit(t *testing.T) {
	g, err := graph.New("F", []graph.Step{{Name: "start", Next: []string{"end"}}, {Name: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRun(t, g, quitExec{}, Options{})
	err = execute(t, r)
	if err == nil || !strings.Contains(err.Error(), "exited (status 0) before step start returned: did the step call quit()?") {
		t.Fatalf("error %v; want the quit() explanation", err)
	}
	if strings.Contains(err.Error(), "_result.mpk") {
		t.Fatalf("error %v names the runtime's file", err)
	}
}
