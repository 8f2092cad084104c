//go:build linux

package batch

// Integration tests against moto_server, the AWS emulator (pip install
// 'moto[server]'). TestMain starts two servers on free loopback ports and
// stops them at the end:
//
//   - "frozen": job state transitions are switched off (moto's state
//     manager), so every job stays SUBMITTED and never reaches docker. Used
//     for API behaviour: tags, batched describe, list filters, terminate,
//     queue checks.
//   - "live": moto runs each job as a docker container, with
//     MOTO_DOCKER_NETWORK_MODE=host so jobs reach moto on 127.0.0.1. Used
//     with the image tests/batch/build-image.sh builds.
//
// Two servers because moto cannot un-freeze selectively: un-freezing would
// start a container for every frozen job of every earlier test.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/metaflow-r/metaflow/internal/mototest"
)

var emu struct {
	frozen, live string // endpoint URLs; empty when skipped
	skip         string
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	flag.Parse()
	cleanup, err := mototest.Isolate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolate the tests:", err)
		return 1
	}
	defer cleanup()
	if testing.Short() {
		emu.skip = "-short: not starting moto_server"
		return m.Run()
	}
	path, err := exec.LookPath("moto_server")
	if err != nil {
		emu.skip = "moto_server is not installed (pip install 'moto[server]'); skipping the AWS Batch emulator tests"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "metaflow-batch-moto-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "moto: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, name := range []string{"frozen", "live"} {
		url, stop, err := mototest.Start(path, filepath.Join(dir, name+".log"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "moto (%s): %v\n", name, err)
			return 1
		}
		stops = append(stops, stop)
		if name == "frozen" {
			emu.frozen = url
		} else {
			emu.live = url
		}
	}
	// The transition is per server: "manual" progression needing a million
	// describes per step keeps every job SUBMITTED.
	if err := motoAPI(emu.frozen, "state-manager/set-transition",
		`{"model_name": "batch::job", "transition": {"progression": "manual", "times": 1000000}}`); err != nil {
		fmt.Fprintln(os.Stderr, "moto: freeze job states:", err)
		return 1
	}

	mototest.SetSDKEnv(emu.frozen)
	return m.Run()
}

func motoAPI(url, path, body string) error {
	resp, err := http.Post(url+"/moto-api/"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// fixture is one test's view of an emulator: a client made by New (the
// production path) plus raw SDK clients to set up what an admin would.
type fixture struct {
	t     testing.TB
	ctx   context.Context
	c     *Client
	cfg   aws.Config
	raw   *batch.Client
	role  string
	queue string
	live  bool
	mu    sync.Mutex
	ids   []string // submitted jobs, to check their containers are gone
}

var queueSeq struct {
	sync.Mutex
	n int
}

func newFixture(t testing.TB, live bool) *fixture {
	t.Helper()
	if emu.skip != "" {
		t.Skip(emu.skip)
	}
	if live {
		t.Setenv("AWS_ENDPOINT_URL", emu.live)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	c, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The raw client needs the same tolerance of moto's float "vcpus".
	raw := batch.NewFromConfig(cfg, func(o *batch.Options) { o.APIOptions = append(o.APIOptions, registerLenient) })
	f := &fixture{t: t, ctx: ctx, c: c, cfg: cfg, raw: raw, live: live}
	if live {
		t.Cleanup(f.containersGone)
	}
	f.role = f.iamRole("metaflow-batch-service")
	f.queue = f.newQueue(f.unmanagedCE(), types.JQStateEnabled)
	return f
}

func (f *fixture) name(kind string) string {
	queueSeq.Lock()
	defer queueSeq.Unlock()
	queueSeq.n++
	return fmt.Sprintf("%s-%d", kind, queueSeq.n)
}

// iamRole returns the ARN of a role, creating it on first use.
func (f *fixture) iamRole(name string) string {
	f.t.Helper()
	c := iam.NewFromConfig(f.cfg)
	if out, err := c.GetRole(f.ctx, &iam.GetRoleInput{RoleName: aws.String(name)}); err == nil {
		return aws.ToString(out.Role.Arn)
	}
	out, err := c.CreateRole(f.ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)})
	if err != nil {
		f.t.Fatalf("create role %s: %v", name, err)
	}
	return aws.ToString(out.Role.Arn)
}

func (f *fixture) unmanagedCE() string {
	f.t.Helper()
	name := f.name("ce-unmanaged")
	if _, err := f.raw.CreateComputeEnvironment(f.ctx, &batch.CreateComputeEnvironmentInput{
		ComputeEnvironmentName: aws.String(name), Type: types.CETypeUnmanaged, ServiceRole: aws.String(f.role),
		State: types.CEStateEnabled, // moto leaves it empty otherwise; AWS defaults to ENABLED
	}); err != nil {
		f.t.Fatalf("create compute environment: %v", err)
	}
	return name
}

// managedCE makes an EC2 compute environment with maxvCpus and types, in
// moto's default VPC.
func (f *fixture) managedCE(maxvCPUs int32, instanceTypes ...string) string {
	f.t.Helper()
	ic := iam.NewFromConfig(f.cfg)
	profile := f.name("instance-profile")
	if _, err := ic.CreateInstanceProfile(f.ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(profile)}); err != nil {
		f.t.Fatalf("create instance profile: %v", err)
	}
	ec := ec2.NewFromConfig(f.cfg)
	subnets, err := ec.DescribeSubnets(f.ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) == 0 {
		f.t.Fatalf("describe subnets: %v (%d)", err, len(subnets.Subnets))
	}
	sgs, err := ec.DescribeSecurityGroups(f.ctx, &ec2.DescribeSecurityGroupsInput{
		Filters: []ec2types.Filter{{Name: aws.String("group-name"), Values: []string{"default"}}},
	})
	if err != nil || len(sgs.SecurityGroups) == 0 {
		f.t.Fatalf("describe security groups: %v", err)
	}
	name := f.name("ce-ec2")
	if _, err := f.raw.CreateComputeEnvironment(f.ctx, &batch.CreateComputeEnvironmentInput{
		ComputeEnvironmentName: aws.String(name), Type: types.CETypeManaged, ServiceRole: aws.String(f.role),
		State: types.CEStateEnabled,
		ComputeResources: &types.ComputeResource{
			Type: types.CRTypeEc2, MinvCpus: aws.Int32(0), DesiredvCpus: aws.Int32(0), MaxvCpus: aws.Int32(maxvCPUs),
			InstanceTypes: instanceTypes, InstanceRole: aws.String(profile),
			Subnets:          []string{aws.ToString(subnets.Subnets[0].SubnetId)},
			SecurityGroupIds: []string{aws.ToString(sgs.SecurityGroups[0].GroupId)},
		},
	}); err != nil {
		f.t.Fatalf("create managed compute environment: %v", err)
	}
	return name
}

func (f *fixture) newQueue(ce string, state types.JQState) string {
	f.t.Helper()
	name := f.name("queue")
	if _, err := f.raw.CreateJobQueue(f.ctx, &batch.CreateJobQueueInput{
		JobQueueName: aws.String(name), Priority: aws.Int32(1),
		State:                   state, // moto requires it; AWS defaults to ENABLED
		ComputeEnvironmentOrder: []types.ComputeEnvironmentOrder{{Order: aws.Int32(1), ComputeEnvironment: aws.String(ce)}},
	}); err != nil {
		f.t.Fatalf("create job queue: %v", err)
	}
	return name
}

func (f *fixture) submit(spec JobSpec) string {
	f.t.Helper()
	if spec.Queue == "" {
		spec.Queue = f.queue
	}
	if spec.Image == "" && spec.JobDefinition == "" {
		spec.Image = noImage
	}
	id, err := f.c.Submit(f.ctx, spec)
	if err != nil {
		f.t.Fatalf("submit %+v: %v", spec.Labels, err)
	}
	f.mu.Lock()
	f.ids = append(f.ids, id)
	f.mu.Unlock()
	return id
}

// containersGone waits until moto has removed the containers of this test's
// jobs (it does so after marking a job done, so stopping moto right after
// the last describe would leave them behind), and removes stragglers.
func (f *fixture) containersGone() {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range f.ids {
		for {
			// moto names a job's container <job name>-<job id>.
			out, err := exec.Command("docker", "ps", "-aq", "--filter", "name=-"+id+"$").Output()
			left := strings.Fields(string(out))
			if err != nil || len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				f.t.Errorf("container %v of job %s still exists 30s after the test; removing it", left, id)
				exec.Command("docker", append([]string{"rm", "-f"}, left...)...).Run()
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// dockerImage reports whether the local test image exists.
func dockerImage(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not installed")
	}
	var out bytes.Buffer
	cmd := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", testImage)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Skipf("image %s is absent (build it with tests/batch/build-image.sh): %s", testImage, strings.TrimSpace(out.String()))
	}
}

// waitDone polls a job every 100 ms until it is SUCCEEDED or FAILED and
// returns its last status and when each state was first seen.
func (f *fixture) waitDone(id string, timeout time.Duration) (JobStatus, map[State]time.Duration) {
	f.t.Helper()
	start := time.Now()
	seen := map[State]time.Duration{}
	for time.Since(start) < timeout {
		st, err := f.c.Describe(f.ctx, []string{id})
		if err != nil {
			f.t.Fatal(err)
		}
		s := st[id]
		if _, ok := seen[s.Status]; !ok {
			seen[s.Status] = time.Since(start)
		}
		if s.Status.Done() {
			return s, seen
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("job %s not done after %s (states seen %v)", id, timeout, seen)
	return JobStatus{}, nil
}
