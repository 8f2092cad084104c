//go:build linux

package rpc

// BatchJobs (batch list|kill) against moto_server, the AWS emulator (pip
// install 'moto[server]'), started here on a free loopback port with job
// state transitions switched off, so every job stays SUBMITTED and never
// needs docker. Skipped, with a message, when moto_server is not installed
// or with -short.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsbatch "github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metaflow-r/metaflow/batch"
	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/internal/mototest"
	pb "github.com/metaflow-r/metaflow/proto/enginepb"
)

// startFrozenMoto starts moto_server in its own process group (stopped at
// the end of the test), with Batch jobs frozen in SUBMITTED, and points the
// AWS SDK's default chain at it.
func startFrozenMoto(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not starting moto_server")
	}
	path, err := exec.LookPath("moto_server")
	if err != nil {
		t.Skip("moto_server is not installed (pip install 'moto[server]'); skipping the AWS Batch emulator test")
	}
	url, stop, err := mototest.Start(path, filepath.Join(t.TempDir(), "moto.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	resp, err := http.Post(url+"/moto-api/state-manager/set-transition", "application/json",
		strings.NewReader(`{"model_name": "batch::job", "transition": {"progression": "manual", "times": 1000000}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("moto: freeze job states: %s", resp.Status)
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
		"AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	return url
}

// motoQueue creates what an admin would: a role, an unmanaged compute
// environment and enabled job queues.
func motoQueue(t *testing.T, ctx context.Context, names ...string) {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	role, err := iam.NewFromConfig(cfg).CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String("metaflow-batch-service"), AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)})
	if err != nil {
		t.Fatal(err)
	}
	raw := awsbatch.NewFromConfig(cfg)
	if _, err := raw.CreateComputeEnvironment(ctx, &awsbatch.CreateComputeEnvironmentInput{
		ComputeEnvironmentName: aws.String("metaflow-ce"), Type: types.CETypeUnmanaged, ServiceRole: role.Role.Arn, State: types.CEStateEnabled,
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, err := raw.CreateJobQueue(ctx, &awsbatch.CreateJobQueueInput{
			JobQueueName: aws.String(name), Priority: aws.Int32(1), State: types.JQStateEnabled,
			ComputeEnvironmentOrder: []types.ComputeEnvironmentOrder{{Order: aws.Int32(1), ComputeEnvironment: aws.String("metaflow-ce")}},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// newBatchJobsFromEnv is what metaflow-engine serve installs.
func newBatchJobsFromEnv() (BatchJobsClient, string, error) {
	cfg, err := batch.ConfigFromEnv()
	if err != nil {
		return nil, "", err
	}
	c, err := batch.New(context.Background(), batch.Options{JobRoleARN: cfg.JobRole})
	if err != nil {
		return nil, "", err
	}
	return c, cfg.Queue, nil
}

func TestBatchJobsListAndKillAgainstMoto(t *testing.T) {
	startFrozenMoto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const queue, flow = "metaflow-queue", "BatchListFlowR"
	motoQueue(t, ctx, queue)

	c, err := batch.New(ctx, batch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]batch.Labels{
		"alice15start": {Flow: flow, User: "alice", Run: "15", Step: "start", Task: "1"},
		"alice15work2": {Flow: flow, User: "alice", Run: "15", Step: "work", Task: "2"},
		"alice15work3": {Flow: flow, User: "alice", Run: "15", Step: "work", Task: "3", Attempt: 1},
		"alice14":      {Flow: flow, User: "alice", Run: "14", Step: "start", Task: "1"},
		"alice150":     {Flow: flow, User: "alice", Run: "150", Step: "start", Task: "1"},
		"bob15":        {Flow: flow, User: "bob", Run: "15", Step: "start", Task: "1"},
		"otherFlow15":  {Flow: "OtherFlowR", User: "alice", Run: "15", Step: "start", Task: "1"},
		"lowerFlow15":  {Flow: strings.ToLower(flow), User: "alice", Run: "15", Step: "start", Task: "1"},
	}
	ids := map[string]string{}
	byID := map[string]string{}
	for k, l := range jobs {
		// Never pulled: frozen jobs never start.
		id, err := c.Submit(ctx, batch.JobSpec{Queue: queue, Image: "127.0.0.1:9/metaflow-r-none:0", Labels: l})
		if err != nil {
			t.Fatalf("submit %s: %v", k, err)
		}
		ids[k], byID[id] = id, k
	}

	// The datastore knows runs 14 and 15 of the flow: 15 is the latest.
	root := filepath.Join(t.TempDir(), ".metaflow")
	for _, r := range []string{"14", "15"} {
		if err := os.MkdirAll(filepath.Join(root, flow, r), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewServer(okExec{})
	srv.NewBatchJobs = newBatchJobsFromEnv
	cl := serveServer(t, srv)

	// Without configuration: the executor's one-line error.
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "")
	_, err = cl.BatchJobs(ctx, &pb.BatchJobsRequest{Flow: flow, DatastoreRoot: root, User: "alice"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE") {
		t.Fatalf("BatchJobs without configuration: %v", err)
	}
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", queue)
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://metaflow-test/prefix")

	call := func(req *pb.BatchJobsRequest) (*pb.BatchJobsResponse, []string) {
		t.Helper()
		req.Flow, req.DatastoreRoot = flow, root
		resp, err := cl.BatchJobs(ctx, req)
		if err != nil {
			t.Fatalf("BatchJobs(%v): %v", req, err)
		}
		var got []string
		for _, j := range resp.Jobs {
			k, ok := byID[j.JobId]
			if !ok {
				t.Errorf("BatchJobs(%v) returned a foreign job %s %q", req, j.JobId, j.Name)
				continue
			}
			l := jobs[k]
			if j.RunId != l.Run || j.Step != l.Step || j.TaskId != l.Task || j.User != l.User ||
				int(j.Attempt) != l.Attempt || j.Status != "SUBMITTED" || j.Name != batch.JobName(l) {
				t.Errorf("BatchJobs(%v): job %s is %+v, want labels %+v", req, k, j, l)
			}
			got = append(got, k)
		}
		sort.Strings(got)
		return resp, got
	}
	want := func(what string, got []string, w ...string) {
		t.Helper()
		sort.Strings(w)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s: got %v, want %v", what, got, w)
		}
	}

	// batch list: the latest run (15) of the flow, by alice.
	resp, got := call(&pb.BatchJobsRequest{User: "alice"})
	want("latest run", got, "alice15start", "alice15work2", "alice15work3")
	if resp.RunId != "15" || resp.Queue != queue || resp.Killed != 0 {
		t.Errorf("latest run: run %q queue %q killed %d", resp.RunId, resp.Queue, resp.Killed)
	}
	_, got = call(&pb.BatchJobsRequest{User: "alice", RunId: "14"})
	want("--run-id 14", got, "alice14")
	_, got = call(&pb.BatchJobsRequest{User: "alice", AllRuns: true})
	want("--my-runs", got, "alice15start", "alice15work2", "alice15work3", "alice14", "alice150")
	_, got = call(&pb.BatchJobsRequest{User: "bob", AllRuns: true})
	want("--user bob", got, "bob15")
	_, got = call(&pb.BatchJobsRequest{User: "carol", AllRuns: true})
	want("--user carol", got)

	described := func() map[string]batch.JobStatus {
		t.Helper()
		var all []string
		for _, id := range ids {
			all = append(all, id)
		}
		st, err := c.Describe(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	killedNow := func(what string, w ...string) {
		t.Helper()
		var got []string
		for id, s := range described() {
			if s.StatusReason == batchJobsTerminateReason {
				got = append(got, byID[id])
			}
		}
		sort.Strings(got)
		want(what, got, w...)
	}

	// batch kill: exactly the latest run's jobs of alice.
	resp, got = call(&pb.BatchJobsRequest{User: "alice", Kill: true})
	want("kill latest", got, "alice15start", "alice15work2", "alice15work3")
	if resp.Killed != 3 {
		t.Errorf("kill latest: killed %d, want 3", resp.Killed)
	}
	killedNow("after kill latest", "alice15start", "alice15work2", "alice15work3")

	// batch kill --run-id 14 and then --my-runs: never bob's nor other flows'.
	resp, _ = call(&pb.BatchJobsRequest{User: "alice", RunId: "14", Kill: true})
	if resp.Killed != 1 {
		t.Errorf("kill --run-id 14: killed %d, want 1", resp.Killed)
	}
	call(&pb.BatchJobsRequest{User: "alice", AllRuns: true, Kill: true})
	killedNow("after kill --my-runs", "alice15start", "alice15work2", "alice15work3", "alice14", "alice150")
	st := described()
	for _, k := range []string{"bob15", "otherFlow15", "lowerFlow15"} {
		if s := st[ids[k]]; s.Status != batch.StateSubmitted || s.StatusReason != "" {
			t.Errorf("%s was touched: %+v", k, s)
		}
	}
	// batch kill --user bob.
	resp, got = call(&pb.BatchJobsRequest{User: "bob", AllRuns: true, Kill: true})
	want("kill --user bob", got, "bob15")
	killedNow("after kill --user bob", "alice15start", "alice15work2", "alice15work3", "alice14", "alice150", "bob15")
}

// TestBatchJobsStepQueuesAgainstMoto: jobs that steps sent to their own
// queue (batch(queue=) in the run's recorded graph) are listed and killed
// with the run's; jobs of other flows, users or runs in those queues are
// not.
func TestBatchJobsStepQueuesAgainstMoto(t *testing.T) {
	startFrozenMoto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const queue, stepQueue, oldQueue, flow = "metaflow-queue", "step-queue", "old-queue", "StepQueueFlowR"
	motoQueue(t, ctx, queue, stepQueue, oldQueue)
	c, err := batch.New(ctx, batch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	type sub struct {
		queue  string
		labels batch.Labels
	}
	jobs := map[string]sub{
		"alice15start":  {queue, batch.Labels{Flow: flow, User: "alice", Run: "15", Step: "start", Task: "1"}},
		"alice15work2":  {stepQueue, batch.Labels{Flow: flow, User: "alice", Run: "15", Step: "work", Task: "2"}},
		"alice15work3":  {stepQueue, batch.Labels{Flow: flow, User: "alice", Run: "15", Step: "work", Task: "3", Attempt: 1}},
		"alice150":      {stepQueue, batch.Labels{Flow: flow, User: "alice", Run: "150", Step: "work", Task: "2"}},
		"bob15":         {stepQueue, batch.Labels{Flow: flow, User: "bob", Run: "15", Step: "work", Task: "2"}},
		"otherFlow15":   {stepQueue, batch.Labels{Flow: "OtherFlowR", User: "alice", Run: "15", Step: "work", Task: "2"}},
		"alice14":       {oldQueue, batch.Labels{Flow: flow, User: "alice", Run: "14", Step: "start", Task: "1"}},
		"bob14":         {oldQueue, batch.Labels{Flow: flow, User: "bob", Run: "14", Step: "start", Task: "1"}},
		"alice13":       {queue, batch.Labels{Flow: flow, User: "alice", Run: "13", Step: "start", Task: "1"}},
		"otherFlowDflt": {queue, batch.Labels{Flow: "OtherFlowR", User: "alice", Run: "15", Step: "start", Task: "1"}},
	}
	ids := map[string]string{}
	byID := map[string]string{}
	for k, j := range jobs {
		id, err := c.Submit(ctx, batch.JobSpec{Queue: j.queue, Image: "127.0.0.1:9/metaflow-r-none:0", Labels: j.labels})
		if err != nil {
			t.Fatalf("submit %s: %v", k, err)
		}
		ids[k], byID[id] = id, k
	}
	// The datastore: run 15 (the latest) sent work to step-queue and start to
	// the default queue (named explicitly); run 14 used old-queue; run 13
	// has no metadata.
	root := filepath.Join(t.TempDir(), ".metaflow")
	putRun(t, root, flow, "15", batchDeco(queue), batchDeco(stepQueue), batchDeco(stepQueue))
	putRun(t, root, flow, "14", batchDeco(oldQueue))
	if err := os.MkdirAll(filepath.Join(root, flow, "13"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := NewServer(okExec{})
	srv.NewBatchJobs = newBatchJobsFromEnv
	cl := serveServer(t, srv)
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", queue)
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://metaflow-test/prefix")

	call := func(what string, req *pb.BatchJobsRequest) *pb.BatchJobsResponse {
		t.Helper()
		req.Flow, req.DatastoreRoot = flow, root
		resp, err := cl.BatchJobs(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return resp
	}
	names := func(resp *pb.BatchJobsResponse) string {
		var got []string
		for _, j := range resp.Jobs {
			k, ok := byID[j.JobId]
			if !ok {
				k = "foreign:" + j.JobId
			} else if l := jobs[k].labels; j.RunId != l.Run || j.Step != l.Step || j.TaskId != l.Task || j.User != l.User || int(j.Attempt) != l.Attempt {
				t.Errorf("job %s is %+v, want labels %+v", k, j, l)
			}
			got = append(got, k)
		}
		sort.Strings(got)
		return strings.Join(got, " ")
	}
	killed := func() string {
		t.Helper()
		var all []string
		for _, id := range ids {
			all = append(all, id)
		}
		st, err := c.Describe(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for id, s := range st {
			if s.StatusReason == batchJobsTerminateReason {
				got = append(got, byID[id])
			}
		}
		sort.Strings(got)
		return strings.Join(got, " ")
	}

	for _, tc := range []struct {
		what   string
		req    *pb.BatchJobsRequest
		want   string // the jobs listed (and, with kill, terminated)
		killed string // every job terminated so far
	}{
		{"list latest (15)", &pb.BatchJobsRequest{User: "alice"},
			"alice15start alice15work2 alice15work3", ""},
		{"list --run-id 14", &pb.BatchJobsRequest{User: "alice", RunId: "14"},
			"alice14", ""},
		{"list --run-id 13, without metadata", &pb.BatchJobsRequest{User: "alice", RunId: "13"},
			"alice13", ""},
		{"list --my-runs", &pb.BatchJobsRequest{User: "alice", AllRuns: true},
			"alice13 alice14 alice150 alice15start alice15work2 alice15work3", ""},
		{"list --user bob", &pb.BatchJobsRequest{User: "bob", AllRuns: true},
			"bob14 bob15", ""},
		{"kill latest (15)", &pb.BatchJobsRequest{User: "alice", Kill: true},
			"alice15start alice15work2 alice15work3", "alice15start alice15work2 alice15work3"},
		{"kill --my-runs", &pb.BatchJobsRequest{User: "alice", AllRuns: true, Kill: true},
			// Killed jobs stay SUBMITTED in frozen moto, so they are listed again.
			"alice13 alice14 alice150 alice15start alice15work2 alice15work3",
			"alice13 alice14 alice150 alice15start alice15work2 alice15work3"},
	} {
		resp := call(tc.what, tc.req)
		if got := names(resp); got != tc.want {
			t.Errorf("%s: listed %q, want %q", tc.what, got, tc.want)
		}
		if tc.req.Kill && int(resp.Killed) != len(resp.Jobs) {
			t.Errorf("%s: killed %d of %d", tc.what, resp.Killed, len(resp.Jobs))
		}
		if resp.Queue != queue {
			t.Errorf("%s: queue %q, want %q", tc.what, resp.Queue, queue)
		}
		if got := killed(); got != tc.killed {
			t.Errorf("%s: terminated so far %q, want %q", tc.what, got, tc.killed)
		}
	}
	// Other users' and other flows' jobs in the same queues were never touched.
	st, err := c.Describe(ctx, []string{ids["bob15"], ids["otherFlow15"], ids["bob14"], ids["otherFlowDflt"]})
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range st {
		if s.Status != batch.StateSubmitted || s.StatusReason != "" {
			t.Errorf("%s was touched: %+v", byID[id], s)
		}
	}
	if len(st) != 4 {
		t.Errorf("described %d of 4 untouched jobs", len(st))
	}
}

// fakeJobs records what BatchJobs asks of Batch and answers List with
// jobs (or fail) by queue.
type fakeJobs struct {
	filters []batch.ListFilter
	queues  []string
	killed  []string
	jobs    map[string][]batch.Job
	fail    map[string]error
	logs    map[string][]string // CloudWatch lines by job id
}

func (f *fakeJobs) JobLog(ctx context.Context, id string, n int) ([]string, error) {
	lines, ok := f.logs[id]
	if !ok {
		return nil, batch.ErrNoLogs
	}
	return lines, nil
}

func (f *fakeJobs) List(ctx context.Context, queue string, flt batch.ListFilter) ([]batch.Job, error) {
	f.filters = append(f.filters, flt)
	f.queues = append(f.queues, queue)
	return f.jobs[queue], f.fail[queue]
}

func (f *fakeJobs) Terminate(ctx context.Context, id, reason string) error {
	f.killed = append(f.killed, id)
	return nil
}

// putRun records a run whose steps have the given decorators, as the
// scheduler does.
func putRun(t *testing.T, root, flow, id string, decos ...datastore.DecoratorMeta) {
	t.Helper()
	run := &datastore.Run{Flow: flow, RunID: id, Status: datastore.StatusRunning}
	for i, d := range decos {
		run.Graph = append(run.Graph, datastore.StepMeta{Name: fmt.Sprint("step", i), Decorators: []datastore.DecoratorMeta{d}})
	}
	if err := datastore.NewLocal(root).PutRun(run); err != nil {
		t.Fatal(err)
	}
}

func batchDeco(queue string) datastore.DecoratorMeta {
	return datastore.DecoratorMeta{Name: "batch", Args: map[string]string{"queue": queue, "cpu": "1"}}
}

// TestBatchJobsQueues: which queues BatchJobs lists, for which selection.
func TestBatchJobsQueues(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	// Run 1 names q1 and the default queue q; run 2 names q2 and q1 (twice)
	// and carries a queue argument on a decorator that is not batch; run 3,
	// the latest, has no metadata; the flow E has no runs.
	putRun(t, root, "F", "1", batchDeco("q1"), batchDeco("q"), batchDeco(""))
	putRun(t, root, "F", "2", batchDeco("q2"), batchDeco("q1"), batchDeco("q1"),
		datastore.DecoratorMeta{Name: "resources", Args: map[string]string{"queue": "bogus"}},
		datastore.DecoratorMeta{Name: "batch"})
	if err := os.MkdirAll(filepath.Join(root, "F", "3"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Flow W's run 1 was started with --with batch:queue=qw.
	withRun := &datastore.Run{Flow: "W", RunID: "1", Status: datastore.StatusRunning,
		Graph: []datastore.StepMeta{{Name: "start"}}, With: []datastore.DecoratorMeta{batchDeco("qw")}}
	if err := datastore.NewLocal(root).PutRun(withRun); err != nil {
		t.Fatal(err)
	}
	fake := &fakeJobs{}
	srv := NewServer(okExec{})
	srv.NewBatchJobs = func() (BatchJobsClient, string, error) { return fake, "q", nil }
	cl := serveServer(t, srv)
	ctx := context.Background()
	for _, tc := range []struct {
		what   string
		req    *pb.BatchJobsRequest
		queues []string
	}{
		{"latest run, without metadata", &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root}, []string{"q"}},
		{"--run-id 1", &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, RunId: "1"}, []string{"q", "q1"}},
		{"--run-id 2", &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, RunId: "2"}, []string{"q", "q2", "q1"}},
		{"--run-id 3, without metadata", &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, RunId: "3"}, []string{"q"}},
		{"--run-id 7, not in the datastore", &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, RunId: "7"}, []string{"q"}},
		{"--my-runs", &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, AllRuns: true}, []string{"q", "q2", "q1"}},
		{"--with batch:queue=qw", &pb.BatchJobsRequest{Flow: "W", DatastoreRoot: root}, []string{"q", "qw"}},
		{"--my-runs, no runs", &pb.BatchJobsRequest{Flow: "E", DatastoreRoot: root, AllRuns: true}, []string{"q"}},
		{"--my-runs, no datastore", &pb.BatchJobsRequest{Flow: "F", AllRuns: true}, []string{"q"}},
	} {
		fake.queues = nil
		tc.req.User = "u"
		if _, err := cl.BatchJobs(ctx, tc.req); err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		if fmt.Sprint(fake.queues) != fmt.Sprint(tc.queues) {
			t.Errorf("%s: listed queues %v, want %v", tc.what, fake.queues, tc.queues)
		}
	}

	// A job seen in two queues (a queue named by name and by ARN) is listed
	// and killed once; jobs of all queues come newest first.
	t0 := time.Now()
	job := func(id string, age time.Duration) batch.Job {
		return batch.Job{ID: id, Name: "mf-" + id, Status: batch.StateRunning, CreatedAt: t0.Add(-age),
			Labels: batch.Labels{Flow: "F", User: "u", Run: "2", Step: "s", Task: "1"}}
	}
	fake.jobs = map[string][]batch.Job{
		"q":  {job("a", 1*time.Minute), job("c", 3*time.Minute)},
		"q2": {job("b", 2*time.Minute)},
		"q1": {job("a", 1*time.Minute)},
	}
	resp, err := cl.BatchJobs(ctx, &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", RunId: "2", Kill: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range resp.Jobs {
		got = append(got, j.JobId)
	}
	if fmt.Sprint(got) != "[a b c]" || fmt.Sprint(fake.killed) != "[a b c]" || resp.Killed != 3 || resp.Queue != "q" {
		t.Errorf("jobs in several queues: listed %v, killed %v (%d), queue %q; want [a b c] each once, queue q", got, fake.killed, resp.Killed, resp.Queue)
	}

	// A queue that cannot be listed: an error naming it and the run, and
	// nothing is terminated, not even the jobs of the queues listed.
	fake.killed = nil
	fake.fail = map[string]error{"q2": fmt.Errorf("list jobs of flow F in queue q2: Job queue q2 does not exist")}
	_, err = cl.BatchJobs(ctx, &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", AllRuns: true, Kill: true})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "queue q2 is named by batch(queue=) in run 2") {
		t.Errorf("failing queue: %v", err)
	}
	if len(fake.killed) != 0 {
		t.Errorf("failing queue: killed %v", fake.killed)
	}
}

func TestBatchJobsRequests(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	srv := NewServer(okExec{})
	cl := serveServer(t, srv)
	ctx := context.Background()
	// No Batch in this engine.
	if _, err := cl.BatchJobs(ctx, &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", AllRuns: true}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("no Batch: %v", err)
	}
	fake := &fakeJobs{}
	srv.NewBatchJobs = func() (BatchJobsClient, string, error) { return fake, "q", nil }
	for _, tc := range []struct {
		req  *pb.BatchJobsRequest
		code codes.Code
		msg  string
	}{
		{&pb.BatchJobsRequest{DatastoreRoot: root, User: "u"}, codes.InvalidArgument, "no flow"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root}, codes.InvalidArgument, "no user"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", RunId: "3", AllRuns: true}, codes.InvalidArgument, "mutually exclusive"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u", RunId: "abc"}, codes.InvalidArgument, "must be a number"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "u"}, codes.NotFound, "no run of flow F found"},
		{&pb.BatchJobsRequest{Flow: "F", DatastoreRoot: "relative", User: "u"}, codes.InvalidArgument, "absolute"},
	} {
		_, err := cl.BatchJobs(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("BatchJobs(%v): %v, want %v %q", tc.req, err, tc.code, tc.msg)
		}
	}
	if len(fake.filters) != 0 {
		t.Fatalf("Batch was asked although the request was refused: %v", fake.filters)
	}
	os.MkdirAll(filepath.Join(root, "F", "9"), 0o755)
	os.MkdirAll(filepath.Join(root, "F", "10"), 0o755)
	for _, req := range []*pb.BatchJobsRequest{
		{Flow: "F", DatastoreRoot: root, User: "u"},
		{Flow: "F", DatastoreRoot: root, User: "u", RunId: "9"},
		{Flow: "F", User: "v", AllRuns: true},
	} {
		if _, err := cl.BatchJobs(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	wantF := []batch.ListFilter{{Flow: "F", User: "u", Run: "10"}, {Flow: "F", User: "u", Run: "9"}, {Flow: "F", User: "v"}}
	if fmt.Sprint(fake.filters) != fmt.Sprint(wantF) {
		t.Errorf("filters %v, want %v", fake.filters, wantF)
	}
}

// TestBatchJobsUnreadableRunIsAnError: a run whose metadata cannot be read
// (here: not JSON) could name queues; nothing is listed or killed.
func TestBatchJobsUnreadableRunIsAnError(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	if err := os.MkdirAll(filepath.Join(root, "F", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "F", "1", "_run.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := &fakeJobs{}
	srv := NewServer(okExec{})
	srv.NewBatchJobs = func() (BatchJobsClient, string, error) { return fake, "q", nil }
	cl := serveServer(t, srv)
	for _, req := range []*pb.BatchJobsRequest{
		{Flow: "F", DatastoreRoot: root, User: "u", RunId: "1", Kill: true},
		{Flow: "F", DatastoreRoot: root, User: "u", AllRuns: true, Kill: true},
	} {
		_, err := cl.BatchJobs(context.Background(), req)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "parse") {
			t.Errorf("%v: error %v, want Unavailable naming the parse error", req, err)
		}
	}
	if len(fake.queues) != 0 || len(fake.killed) != 0 {
		t.Errorf("listed %v, killed %v; want nothing", fake.queues, fake.killed)
	}
}

// TestBatchJobsLatestRunIsTheUsers: in a shared datastore the newest run
// may be somebody else's; "the latest run" is the newest run of the user.
func TestBatchJobsLatestRunIsTheUsers(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".metaflow")
	store := datastore.NewLocal(root)
	for _, r := range []*datastore.Run{
		{Flow: "F", RunID: "1", User: "u", Status: datastore.StatusRunning},
		{Flow: "F", RunID: "2", User: "v", Status: datastore.StatusRunning},
	} {
		if err := store.PutRun(r); err != nil {
			t.Fatal(err)
		}
	}
	fake := &fakeJobs{}
	srv := NewServer(okExec{})
	srv.NewBatchJobs = func() (BatchJobsClient, string, error) { return fake, "q", nil }
	cl := serveServer(t, srv)
	for user, want := range map[string]string{"u": "1", "v": "2"} {
		fake.filters = nil
		if _, err := cl.BatchJobs(context.Background(), &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: user}); err != nil {
			t.Fatal(err)
		}
		if len(fake.filters) != 1 || fake.filters[0].Run != want {
			t.Errorf("user %s: listed %+v, want run %s", user, fake.filters, want)
		}
	}
	_, err := cl.BatchJobs(context.Background(), &pb.BatchJobsRequest{Flow: "F", DatastoreRoot: root, User: "w"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "no run of flow F by w") {
		t.Errorf("a user without runs: %v", err)
	}
}
