package batch

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

// Foreach splits as array jobs (scheduler.ArrayExecutor). The scheduler
// calls Run for every split of a foreach at once, each with Launch.Array.
// Each call prepares its own spec and job folder as a single job would,
// then joins its fan-out's batch; a batch is submitted as one array job
// when every split of the fan-out has joined, when it holds MaxArraySize
// children, or when no split has joined for ArrayGather (splits that never
// come: cloned on resume, failed before they ran). Child i of the array
// runs the batch's i-th split in foreach order: its spec is at
// <array folder>/<i>, which the task runner finds from
// AWS_BATCH_JOB_ARRAY_INDEX. From there each split is followed as its own
// job (id <parent>:<i>): status, logs, outputs and exit record its own.
// Retries come without Launch.Array and are single jobs.

// ArrayGather is how long a fan-out's batch waits for one more split
// before it is submitted with those it has.
var ArrayGather = 2 * time.Second

// RunsArrays makes the executor a scheduler.ArrayExecutor.
func (e *Executor) RunsArrays() {}

// arrayMember is one split waiting to be submitted in its fan-out's array.
type arrayMember struct {
	l    *scheduler.Launch
	j    *prepared
	done chan struct{} // closed once id or err is set
	id   string        // the child's job id, <parent>:<index> (or a job's own)
	arr  *arrayJob     // nil when submitted alone
	err  error
}

// arrayBatch is the members of one fan-out not yet submitted.
type arrayBatch struct {
	members []*arrayMember
	joined  int // members of the fan-out that joined so far, all batches
	timer   *time.Timer
}

// parentOf is an array child's parent job id (the id itself otherwise).
func parentOf(id string) string {
	if i := strings.LastIndexByte(id, ':'); i >= 0 {
		return id[:i]
	}
	return id
}

// runChild submits the attempt as a child of its fan-out's array job and
// follows it.
func (e *Executor) runChild(ctx context.Context, l *scheduler.Launch, j *prepared) (int, error) {
	m := &arrayMember{l: l, j: j, done: make(chan struct{})}
	e.join(m)
	select {
	case <-m.done:
	case <-ctx.Done():
		if e.leave(m) {
			return -1, ctx.Err() // never submitted
		}
		<-m.done // being submitted: follow it, which terminates it
	}
	if m.err != nil {
		return -1, m.err
	}
	return e.follow(ctx, l, j, m.id, m.arr)
}

// join adds m to its fan-out's batch and submits the batch when it is
// complete or full, else (re)arms the gather timer.
func (e *Executor) join(m *arrayMember) {
	key, size := m.l.Array.Group, m.l.Array.Size
	e.arrMu.Lock()
	defer e.arrMu.Unlock()
	if e.arrays == nil {
		e.arrays = map[string]*arrayBatch{}
	}
	b := e.arrays[key]
	if b == nil {
		b = &arrayBatch{}
		e.arrays[key] = b
	}
	b.members = append(b.members, m)
	b.joined++
	if b.joined >= size || len(b.members) >= MaxArraySize {
		e.flushLocked(key, b, b.joined >= size)
		return
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	b.timer = time.AfterFunc(ArrayGather, func() {
		e.arrMu.Lock()
		defer e.arrMu.Unlock()
		if e.arrays[key] != b {
			return
		}
		// Splits that never came (cloned, failed before they ran, left
		// when cancelled) end the wait; later ones start a fresh batch.
		e.flushLocked(key, b, len(b.members) == 0)
	})
}

// leave takes a cancelled m out of its batch; false when it was submitted
// (or is being submitted) already.
func (e *Executor) leave(m *arrayMember) bool {
	e.arrMu.Lock()
	defer e.arrMu.Unlock()
	b := e.arrays[m.l.Array.Group]
	if b == nil {
		return false
	}
	for i, x := range b.members {
		if x == m {
			b.members = append(b.members[:i], b.members[i+1:]...)
			return true
		}
	}
	return false
}

// flushLocked submits b's members (in the background); last drops the
// fan-out's entry, else a fresh batch takes the next members.
func (e *Executor) flushLocked(key string, b *arrayBatch, last bool) {
	if b.timer != nil {
		b.timer.Stop()
	}
	ms := b.members
	b.members = nil
	if last {
		delete(e.arrays, key)
	}
	if len(ms) > 0 {
		go e.submitArray(ms)
	}
}

// arraySubmitTimeout bounds the spec uploads and the SubmitJob of one array.
const arraySubmitTimeout = 10 * time.Minute

// submitArray puts each member's spec at <array folder>/<i> and submits one
// array job for them (a single job when there is one).
func (e *Executor) submitArray(ms []*arrayMember) {
	ctx, cancel := context.WithTimeout(context.Background(), arraySubmitTimeout)
	defer cancel()
	fail := func(err error) {
		for _, m := range ms {
			m.err = err
			close(m.done)
		}
	}
	if len(ms) == 1 {
		m := ms[0]
		m.id, m.err = e.submitOne(ctx, m.j)
		close(m.done)
		return
	}
	sort.Slice(ms, func(a, b int) bool { return ms[a].l.Array.Index < ms[b].l.Array.Index })
	first, last := ms[0].l.Spec, ms[len(ms)-1].l.Spec
	dir := datastore.Key(e.prefix, datastore.JobDir(first.Flow, first.RunID, first.Step, arrayTask, 0, nonce()))
	errs := make([]error, len(ms))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = e.s3.PutBytes(ctx, e.bucket, dir+"/"+strconv.Itoa(i), m.j.spec)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fail(fmt.Errorf("array job of %d splits: task spec: %w", len(ms), err))
			return
		}
	}
	job := ms[0].j.job
	job.Env = make(map[string]string, len(ms[0].j.job.Env)+1)
	for k, v := range ms[0].j.job.Env {
		job.Env[k] = v
	}
	job.Env["METAFLOW_TASK_SPEC"] = "s3://" + e.bucket + "/" + dir + "/"
	job.ArraySize = len(ms)
	job.Labels.Task = first.TaskID + ".." + last.TaskID
	id, err := e.c.Submit(ctx, job)
	if err != nil {
		fail(err)
		return
	}
	a := newArrayJob(id, len(ms))
	for i, m := range ms {
		m.id, m.arr = id+":"+strconv.Itoa(i), a
		close(m.done)
	}
}

// arrayTask names an array job's folder in place of a task id: its specs,
// by array index (each child's own folder is its task's).
const arrayTask = "_array"

// arraySpecKey is the key of the spec the task runner runs: key itself, or
// for an array child (its spec URL ends in "/": array) the spec in folder
// key named by its index, AWS_BATCH_JOB_ARRAY_INDEX, else the ":<index>"
// suffix of AWS_BATCH_JOB_ID (moto sets only the latter).
func arraySpecKey(key string, array bool, getenv func(string) string) (string, error) {
	if !array {
		return key, nil
	}
	key = strings.TrimSuffix(key, "/") + "/"
	idx := getenv("AWS_BATCH_JOB_ARRAY_INDEX")
	if idx == "" {
		if id := getenv("AWS_BATCH_JOB_ID"); strings.Contains(id, ":") {
			idx = id[strings.LastIndexByte(id, ':')+1:]
		}
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 {
		return "", fmt.Errorf("the task spec %s is an array job's, but this job has no array index (AWS_BATCH_JOB_ARRAY_INDEX %q)", key, idx)
	}
	return key + strconv.Itoa(n), nil
}

// singleJobs is the executor without the scheduler.ArrayExecutor capability
// (METAFLOW_BATCH_ARRAY_JOBS=0): every attempt is a job of its own.
type singleJobs struct{ e *Executor }

func (s singleJobs) Run(ctx context.Context, l *scheduler.Launch) (int, error) {
	return s.e.Run(ctx, l)
}

func (s singleJobs) RunsRemotely() {}

func (s singleJobs) Preflight(ctx context.Context, step string, decos map[string]graph.Decorator, rscript string) error {
	return s.e.Preflight(ctx, step, decos, rscript)
}
