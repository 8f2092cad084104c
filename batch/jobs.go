package batch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// terminateReason is the reason Batch records for jobs batch kill stops.
const terminateReason = "killed by metaflow batch kill"

// Jobs implements scheduler.JobManager (batch list|kill): the unfinished
// jobs of one flow, of one run (by default the user's latest run in the
// datastore) or of every run, and always of one user. Selection is exact
// (ListFilter), so jobs of other flows, runs or users are never listed nor
// terminated. The queues searched are the configured one and every
// batch(queue=) of the selected runs' graphs (runQueues); every queue is
// listed before anything is terminated. The report's queue is the
// configured one. Errors carry their kind (engine/errs).
func (p *Plugin) Jobs(ctx context.Context, q scheduler.JobQuery) (*scheduler.JobReport, error) {
	if err := checkQuery(q); err != nil {
		return nil, err
	}
	// The configuration is checked first: without it nothing else matters.
	c, queue, err := p.jobs(ctx)
	if err != nil {
		return nil, errs.MarkIfNone(errs.ErrPrecondition, err)
	}
	runID, runs, store, err := selectRuns(ctx, q)
	if err != nil {
		return nil, err
	}
	queues, usedBy, err := runQueues(ctx, store, q.Flow, runs, queue)
	if err != nil {
		return nil, errs.Unavailable("find the queues of %s's runs in %s: %w", q.Flow, store.Location(), err)
	}
	jobs, err := listQueues(ctx, c, queues, queue, usedBy, ListFilter{Flow: q.Flow, User: q.User, Run: runID})
	if err != nil {
		return nil, err
	}
	rep := &scheduler.JobReport{RunID: runID, Queue: queue}
	var failed []error
	jobs, children := foldChildren(jobs)
	for _, j := range jobs {
		sj := scheduler.Job{
			ID: j.ID, Name: j.Name, Status: string(j.Status), RunID: j.Labels.Run, Step: j.Labels.Step,
			TaskID: j.Labels.Task, User: j.Labels.User, Attempt: j.Labels.Attempt, CreatedAt: j.CreatedAt,
		}
		if q.Kill {
			if err := c.Terminate(ctx, j.ID, terminateReason); err != nil {
				sj.Error = err.Error()
				failed = append(failed, err)
			} else {
				rep.Killed++
				// AWS ends an array job's children with it; a backend
				// that lists them by queue (moto) may not: they go too.
				for _, id := range children[j.ID] {
					if err := c.Terminate(ctx, id, terminateReason); err != nil {
						sj.Error = fmt.Sprintf("array child %s: %v", id, err)
						failed = append(failed, err)
					}
				}
			}
		}
		rep.Jobs = append(rep.Jobs, sj)
	}
	if len(failed) > 0 && rep.Killed == 0 {
		// Nothing could be terminated (e.g. no permission): an error, not a
		// list of per-job failures.
		return nil, errs.Unavailable("could not terminate any of %d job(s): %w", len(failed), failed[0])
	}
	return rep, nil
}

// checkQuery refuses a query that cannot select jobs exactly.
func checkQuery(q scheduler.JobQuery) error {
	switch {
	case q.Flow == "":
		return errs.Invalid("batch jobs: no flow name")
	case q.User == "":
		return errs.Invalid("batch jobs: no user (jobs are selected by user)")
	case q.AllRuns && q.RunID != "":
		return errs.Invalid("batch jobs: a run id and all runs are mutually exclusive")
	}
	if q.RunID != "" {
		if _, err := strconv.ParseUint(q.RunID, 10, 64); err != nil {
			return errs.Invalid("batch jobs: run id must be a number, got %q", q.RunID)
		}
	}
	return nil
}

// selectRuns opens the datastore if the query needs it and returns the run
// the jobs are filtered by ("" for all runs), the runs whose recorded graphs
// name queues, and the datastore (nil when the query named none). The
// datastore is needed to find the latest run; otherwise only to find the
// queues the runs used, so without one only the configured queue is
// searched. A datastore that cannot be read is an error: a kill must not
// quietly skip the queues it would have named.
func selectRuns(ctx context.Context, q scheduler.JobQuery) (runID string, runs []string, store scheduler.RunReader, err error) {
	if q.Runs != nil {
		if store, err = q.Runs(); err != nil {
			return "", nil, nil, err // it says what is wrong with the datastore
		}
	} else if q.Latest() {
		return "", nil, nil, errs.Invalid("batch jobs: the latest run is found in a datastore, and none was given")
	}
	switch {
	case q.Latest():
		where := store.Location()
		ids, err := store.ListRuns(ctx, q.Flow)
		if err != nil {
			return "", nil, nil, errs.MarkIfNone(errs.ErrUnavailable, err)
		}
		if len(ids) == 0 {
			return "", nil, nil, errs.NotFound("no run of flow %s found in %s: give a run id (--run-id) or --my-runs", q.Flow, where)
		}
		// The newest run that may be this user's: in a shared (S3)
		// datastore the newest run may be somebody else's. A run without
		// metadata (being created, or its folder only) may be anybody's.
		for _, id := range ids {
			run, err := store.GetRun(ctx, q.Flow, id)
			if err != nil && !errors.Is(err, errs.ErrNotFound) {
				return "", nil, nil, errs.Unavailable("read run %s of %s in %s: %w", id, q.Flow, where, err)
			}
			if err != nil || run.User == "" || run.User == q.User {
				runID = id
				break
			}
		}
		if runID == "" {
			return "", nil, nil, errs.NotFound("no run of flow %s by %s found in %s: give a run id (--run-id) or --my-runs", q.Flow, q.User, where)
		}
		return runID, []string{runID}, store, nil
	case q.AllRuns:
		if store != nil {
			if runs, err = store.ListRuns(ctx, q.Flow); err != nil {
				return "", nil, nil, errs.Unavailable("list the runs of %s in %s: %w", q.Flow, store.Location(), err)
			}
		}
		return "", runs, store, nil
	default:
		return q.RunID, []string{q.RunID}, store, nil
	}
}

// listQueues lists the jobs f selects in each queue, each job once (a queue
// can be named both by name and by ARN), newest first. A queue that cannot
// be listed is an error naming the runs that named it (def is the
// configured one), so that nothing is terminated unless every queue could
// be listed.
func listQueues(ctx context.Context, c jobsAPI, queues []string, def string, usedBy map[string][]string, f ListFilter) ([]Job, error) {
	var jobs []Job
	seen := map[string]bool{}
	for _, q := range queues {
		js, err := c.List(ctx, q, f)
		if err != nil {
			if q == def {
				return nil, errs.Mark(errs.ErrUnavailable, err)
			}
			by, what := usedBy[q], "run"
			if len(by) > 1 {
				what = "runs"
			}
			if len(by) > 3 {
				by = append(by[:3:3], "...")
			}
			return nil, errs.Unavailable("%w (queue %s is named by batch(queue=) in %s %s; --run-id selects other runs)", err, q, what, strings.Join(by, ", "))
		}
		for _, j := range js {
			if !seen[j.ID] {
				seen[j.ID] = true
				jobs = append(jobs, j)
			}
		}
	}
	if len(queues) > 1 {
		sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].CreatedAt.After(jobs[b].CreatedAt) })
	}
	return jobs, nil
}

// runQueues returns the queues to search for the jobs of runs of flow:
// def (the configured queue) first, then every distinct non-empty queue
// argument of a batch decorator in the runs' recorded graphs, in order of
// first appearance, each once; and for each of the latter the runs naming
// it (with --with batch:queue=, recorded as the run's With). A run without
// metadata adds nothing; metadata that cannot be read is an error.
func runQueues(ctx context.Context, store scheduler.RunReader, flow string, runs []string, def string) ([]string, map[string][]string, error) {
	queues := []string{def}
	usedBy := map[string][]string{}
	if store == nil {
		return queues, usedBy, nil
	}
	for _, id := range runs {
		run, err := store.GetRun(ctx, flow, id)
		if errors.Is(err, errs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err // the store's error names the run
		}
		// --with batch:queue=... applies to every step.
		decos := append([]datastore.DecoratorMeta{}, run.With...)
		for _, st := range run.Graph {
			decos = append(decos, st.Decorators...)
		}
		for _, d := range decos {
			q := d.Args["queue"]
			if d.Name != Decorator || q == "" || q == def {
				continue
			}
			if _, ok := usedBy[q]; !ok {
				queues = append(queues, q)
			}
			if u := usedBy[q]; len(u) == 0 || u[len(u)-1] != id {
				usedBy[q] = append(u, id)
			}
		}
	}
	return queues, usedBy, nil
}

// foldChildren keeps one row per array job: children ("<parent>:<i>") of
// a listed parent are taken out (AWS lists only parents by queue; moto
// lists the children too), returned by parent id.
func foldChildren(jobs []Job) ([]Job, map[string][]string) {
	parents := map[string]bool{}
	for _, j := range jobs {
		parents[j.ID] = true
	}
	out := jobs[:0:0]
	children := map[string][]string{}
	for _, j := range jobs {
		if p := parentOf(j.ID); p != j.ID && parents[p] {
			children[p] = append(children[p], j.ID)
			continue
		}
		out = append(out, j)
	}
	return out, children
}
