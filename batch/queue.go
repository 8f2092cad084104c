package batch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

var (
	// ErrQueueNotFound: the job queue does not exist (in this account and region).
	ErrQueueNotFound = errors.New("job queue not found")
	// ErrUnsatisfiable: no compute environment of the queue could ever run
	// the request, so a job would sit in RUNNABLE forever.
	ErrUnsatisfiable = errors.New("no compute environment of the queue can run this job")
)

// CheckQueue refuses a request before submission when queue does not exist,
// is disabled, or none of its compute environments could ever run a job of
// size r. It only refuses what it knows is impossible: unmanaged compute
// environments and instance types it does not know are given the benefit of
// the doubt. It costs two API calls; call it once per queue and size.
func (c *Client) CheckQueue(ctx context.Context, queue string, r Resources) error {
	r = r.WithDefaults()
	if err := r.validate(); err != nil {
		return err
	}
	qs, err := c.batch.DescribeJobQueues(ctx, &batch.DescribeJobQueuesInput{JobQueues: []string{queue}})
	if err != nil {
		return fmt.Errorf("describe job queue %s: %w", queue, err)
	}
	var q *types.JobQueueDetail
	for i := range qs.JobQueues {
		d := &qs.JobQueues[i]
		if aws.ToString(d.JobQueueName) == queue || aws.ToString(d.JobQueueArn) == queue {
			q = d
		}
	}
	if q == nil {
		return fmt.Errorf("job queue %q: %w (check METAFLOW_BATCH_JOB_QUEUE and the AWS region)", queue, ErrQueueNotFound)
	}
	var names []string
	for _, o := range q.ComputeEnvironmentOrder {
		names = append(names, aws.ToString(o.ComputeEnvironment))
	}
	var ces []types.ComputeEnvironmentDetail
	if len(names) > 0 {
		out, err := c.batch.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: names})
		if err != nil {
			return fmt.Errorf("describe compute environments of job queue %s: %w", queue, err)
		}
		ces = out.ComputeEnvironments
	}
	return checkQueue(*q, ces, r)
}

// checkQueue is CheckQueue's decision, on already fetched descriptions.
func checkQueue(q types.JobQueueDetail, ces []types.ComputeEnvironmentDetail, r Resources) error {
	name := aws.ToString(q.JobQueueName)
	// Only an explicit DISABLED refuses: moto leaves the state empty when
	// it was not given at creation (AWS defaults to ENABLED).
	if q.State == types.JQStateDisabled {
		return fmt.Errorf("job queue %s is %s and accepts no jobs: %w", name, q.State, ErrUnsatisfiable)
	}
	if q.Status == types.JQStatusInvalid {
		return fmt.Errorf("job queue %s is INVALID (%s): %w", name, aws.ToString(q.StatusReason), ErrUnsatisfiable)
	}
	byID := map[string]types.ComputeEnvironmentDetail{}
	for _, ce := range ces {
		byID[aws.ToString(ce.ComputeEnvironmentName)] = ce
		byID[aws.ToString(ce.ComputeEnvironmentArn)] = ce
	}
	var why []string
	for _, o := range q.ComputeEnvironmentOrder {
		id := aws.ToString(o.ComputeEnvironment)
		ce, ok := byID[id]
		if !ok {
			why = append(why, fmt.Sprintf("%s: not found", id))
			continue
		}
		reason := ceRefuses(ce, r)
		if reason == "" {
			return nil
		}
		why = append(why, fmt.Sprintf("%s: %s", aws.ToString(ce.ComputeEnvironmentName), reason))
	}
	if len(why) == 0 {
		why = append(why, "the queue has no compute environment")
	}
	return fmt.Errorf("job queue %s cannot run a job of %s (%s): %w", name, r, strings.Join(why, "; "), ErrUnsatisfiable)
}

// ceRefuses says why ce can never run r, or "" if it might.
func ceRefuses(ce types.ComputeEnvironmentDetail, r Resources) string {
	if ce.State == types.CEStateDisabled {
		return fmt.Sprintf("state is %s", ce.State)
	}
	if ce.Status == types.CEStatusInvalid {
		return fmt.Sprintf("status is INVALID (%s)", aws.ToString(ce.StatusReason))
	}
	cr := ce.ComputeResources
	if ce.Type == types.CETypeUnmanaged || cr == nil {
		// Its instances are someone else's business: cannot know.
		return ""
	}
	if cr.MaxvCpus != nil && int(*cr.MaxvCpus) < r.VCPUs {
		return fmt.Sprintf("maxvCpus is %d", *cr.MaxvCpus)
	}
	switch cr.Type {
	case types.CRTypeFargate, types.CRTypeFargateSpot:
		switch {
		case r.GPUs > 0:
			return "Fargate has no GPUs"
		case r.VCPUs > fargateMaxVCPUs:
			return fmt.Sprintf("Fargate allows at most %d vCPUs", fargateMaxVCPUs)
		case r.MemoryMB > fargateMaxMemoryMB:
			return fmt.Sprintf("Fargate allows at most %d MiB", fargateMaxMemoryMB)
		}
		return ""
	}
	return instancesRefuse(cr.InstanceTypes, r)
}

const (
	fargateMaxVCPUs    = 16
	fargateMaxMemoryMB = 120 * 1024
	// maxGPUsPerInstance is the most GPUs any EC2 instance has (p2.16xlarge).
	maxGPUsPerInstance = 16
)

var instanceRe = regexp.MustCompile(`^([a-z]+)(\d+)([a-z-]*)(?:\.(\d*)x?(large|metal[-0-9a-z]*))?$`)

// instance is what we know of an instance type or family; zero means unknown.
type instance struct {
	gpu      bool // the family has GPUs
	maxVCPUs int  // of this size (0 for a family or an unknown size)
	memGiB   int  // of this size, for families with a fixed GiB per vCPU
}

// gibPerVCPU holds the families whose memory is a fixed multiple of vCPUs.
var gibPerVCPU = map[string]int{"c": 2, "m": 4, "r": 8}

// describeInstance parses names like "m5.2xlarge", "p3", "g4dn.xlarge",
// "optimal" or "default_x86_64". ok is false for names we cannot read.
func describeInstance(name string) (in instance, ok bool) {
	switch name {
	case "optimal", "default_x86_64", "default_arm64":
		// Batch picks C, M and R families for these: no GPUs.
		return instance{}, true
	}
	m := instanceRe.FindStringSubmatch(name)
	if m == nil {
		return instance{}, false
	}
	class, size := m[1], m[5]
	in.gpu = class == "p" || class == "g" || class == "gr"
	if size == "large" {
		n := 1
		if m[4] != "" {
			n, _ = strconv.Atoi(m[4])
		}
		// "large" is 2 vCPUs, "xlarge" 4 and "Nxlarge" 4N in every
		// current family.
		if strings.Contains(name, "xlarge") {
			in.maxVCPUs = 4 * n
		} else {
			in.maxVCPUs = 2
		}
		// c5n has 2.625 GiB per vCPU: leave network-optimized C unknown
		// rather than refuse what fits.
		if g, ok := gibPerVCPU[class]; ok && !(class == "c" && strings.Contains(m[3], "n")) {
			in.memGiB = g * in.maxVCPUs
		}
	}
	return in, true
}

// instancesRefuse says why none of types can host r, or "" if one might.
func instancesRefuse(types []string, r Resources) string {
	if r.GPUs > maxGPUsPerInstance {
		return fmt.Sprintf("no instance type has %d GPUs", r.GPUs)
	}
	if len(types) == 0 {
		return "" // launch template or unknown: cannot know
	}
	var why []string
	for _, t := range types {
		in, ok := describeInstance(t)
		switch {
		case !ok:
			return "" // unknown type: might fit
		case r.GPUs > 0 && !in.gpu:
			why = append(why, t+" has no GPU")
		case in.maxVCPUs > 0 && r.VCPUs > in.maxVCPUs:
			why = append(why, fmt.Sprintf("%s has %d vCPUs", t, in.maxVCPUs))
		case in.memGiB > 0 && r.MemoryMB > in.memGiB*1024:
			// The ECS agent keeps some memory too, so even equality may
			// never be placed; only the certain case is refused.
			why = append(why, fmt.Sprintf("%s has %d GiB", t, in.memGiB))
		default:
			return ""
		}
	}
	return "instance types: " + strings.Join(why, ", ")
}
