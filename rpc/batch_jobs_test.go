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
// environment and an enabled job queue.
func motoQueue(t *testing.T, ctx context.Context, name string) {
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
	if _, err := raw.CreateJobQueue(ctx, &awsbatch.CreateJobQueueInput{
		JobQueueName: aws.String(name), Priority: aws.Int32(1), State: types.JQStateEnabled,
		ComputeEnvironmentOrder: []types.ComputeEnvironmentOrder{{Order: aws.Int32(1), ComputeEnvironment: aws.String("metaflow-ce")}},
	}); err != nil {
		t.Fatal(err)
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

// fakeJobs records what BatchJobs asks of Batch.
type fakeJobs struct {
	filters []batch.ListFilter
}

func (f *fakeJobs) List(ctx context.Context, queue string, flt batch.ListFilter) ([]batch.Job, error) {
	f.filters = append(f.filters, flt)
	return nil, nil
}

func (f *fakeJobs) Terminate(ctx context.Context, id, reason string) error { return nil }

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
