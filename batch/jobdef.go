package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

// jobDef is one job definition, resolved at most once per Client.
type jobDef struct {
	once sync.Once
	arn  string
	err  error
}

// jobDefName names the job definition for image+resources+container (its
// roles resolved). The hash covers everything in the definition, so a name
// never refers to two different contents and a definition registered by an
// earlier process (or another user) can be reused as is. A definition with
// no execution role and no Linux parameters keeps the name earlier
// versions gave it (key v1), so those are reused; any other is keyed by the
// JSON of every field (v2), which no v1 key can equal.
func jobDefName(image string, r Resources, c Container) string {
	var key string
	if c.ExecutionRole == "" && c.linuxParameters() == nil {
		key = fmt.Sprintf("v1\x00%s\x00%d\x00%d\x00%d\x00%s", image, r.VCPUs, r.MemoryMB, r.GPUs, c.JobRole)
	} else {
		// Marshalling strings, ints and pointers to ints cannot fail.
		b, _ := json.Marshal(struct {
			Image         string `json:"image"`
			VCPUs         int    `json:"vcpus"`
			MemoryMB      int    `json:"memory"`
			GPUs          int    `json:"gpus"`
			JobRole       string `json:"job_role"`
			ExecutionRole string `json:"execution_role"`
			SharedMemory  int    `json:"shared_memory"`
			MaxSwap       *int   `json:"max_swap"`
			Swappiness    *int   `json:"swappiness"`
		}{image, r.VCPUs, r.MemoryMB, r.GPUs, c.JobRole, c.ExecutionRole, c.SharedMemoryMiB, c.MaxSwapMiB, c.Swappiness})
		key = "v2\x00" + string(b)
	}
	sum := sha256.Sum256([]byte(key))
	slug := []byte(image)
	for i, c := range slug {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			slug[i] = '_'
		}
	}
	if len(slug) > 60 {
		slug = slug[len(slug)-60:] // the tag end of an image name says most
	}
	return fmt.Sprintf("metaflow-r-%s-%dc-%dm-%dg-%s", slug, r.VCPUs, r.MemoryMB, r.GPUs, hex.EncodeToString(sum[:])[:12])
}

// jobDefinition returns the ARN of the job definition for image, r and c
// (roles resolved), registering it if needed. Concurrent callers share one
// lookup.
func (c *Client) jobDefinition(ctx context.Context, image string, r Resources, ctr Container) (string, error) {
	name := jobDefName(image, r, ctr)
	c.mu.Lock()
	d, ok := c.defs[name]
	if !ok {
		d = &jobDef{}
		c.defs[name] = d
	}
	c.mu.Unlock()
	d.once.Do(func() { d.arn, d.err = c.ensureJobDefinition(ctx, name, image, r, ctr) })
	if d.err != nil {
		// Forget failures so a later Submit tries again.
		c.mu.Lock()
		if c.defs[name] == d {
			delete(c.defs, name)
		}
		c.mu.Unlock()
		return "", d.err
	}
	return d.arn, nil
}

func (c *Client) ensureJobDefinition(ctx context.Context, name, image string, r Resources, ctr Container) (string, error) {
	// One cheap lookup first: re-registering on every engine start would
	// pile up revisions.
	out, err := c.batch.DescribeJobDefinitions(ctx, &batch.DescribeJobDefinitionsInput{
		JobDefinitionName: aws.String(name),
		Status:            aws.String("ACTIVE"),
	})
	if err != nil {
		return "", fmt.Errorf("look up job definition %s: %w", name, err)
	}
	best, rev := "", int32(-1)
	for _, d := range out.JobDefinitions {
		if aws.ToString(d.JobDefinitionName) != name || !strings.EqualFold(aws.ToString(d.Status), "ACTIVE") {
			continue
		}
		if d.ContainerProperties == nil || aws.ToString(d.ContainerProperties.Image) != image || !ctr.matches(d.ContainerProperties) {
			continue
		}
		if aws.ToInt32(d.Revision) > rev {
			best, rev = aws.ToString(d.JobDefinitionArn), aws.ToInt32(d.Revision)
		}
	}
	if best != "" {
		return best, nil
	}
	props := &types.ContainerProperties{
		Image:                aws.String(image),
		ResourceRequirements: r.requirements(),
	}
	if ctr.JobRole != "" {
		props.JobRoleArn = aws.String(ctr.JobRole)
	}
	if ctr.ExecutionRole != "" {
		props.ExecutionRoleArn = aws.String(ctr.ExecutionRole)
	}
	props.LinuxParameters = ctr.linuxParameters()
	reg, err := c.batch.RegisterJobDefinition(ctx, &batch.RegisterJobDefinitionInput{
		JobDefinitionName:    aws.String(name),
		Type:                 types.JobDefinitionTypeContainer,
		ContainerProperties:  props,
		PlatformCapabilities: []types.PlatformCapability{types.PlatformCapabilityEc2},
		PropagateTags:        aws.Bool(true),
		// The engine retries by resubmitting, so Batch must not retry too.
		RetryStrategy: &types.RetryStrategy{Attempts: aws.Int32(1)},
		Tags:          map[string]string{"app": "metaflow-r"},
	})
	if err != nil {
		return "", fmt.Errorf("register job definition %s for image %s: %w", name, image, err)
	}
	return aws.ToString(reg.JobDefinitionArn), nil
}

// Container is what a job definition fixes about a job's container besides
// image and size: its IAM roles and Linux parameters, Metaflow's
// batch(iam_role=, execution_role=, shared_memory=, max_swap=, swappiness=).
// SubmitJob cannot override any of them (its containerOverrides take only
// command, environment, instance type and resources), so each distinct
// Container has a job definition of its own.
type Container struct {
	// JobRole is the IAM role whose credentials the job's processes get;
	// empty: Options.JobRoleARN (METAFLOW_ECS_S3_ACCESS_IAM_ROLE).
	JobRole string
	// ExecutionRole is the IAM role ECS uses to start the container (pull
	// the image, send logs); empty: Options.ExecutionRoleARN
	// (METAFLOW_ECS_FARGATE_EXECUTION_ROLE).
	ExecutionRole string
	// SharedMemoryMiB is the size of /dev/shm (docker --shm-size); 0 leaves
	// Docker's default (64 MiB).
	SharedMemoryMiB int
	// MaxSwapMiB is the swap the container may use (docker --memory-swap is
	// memory plus this; 0: no swap); nil: the instance's configuration.
	MaxSwapMiB *int
	// Swappiness (0-100, docker --memory-swappiness); nil: Batch's default
	// (60). Batch ignores it unless MaxSwapMiB is set.
	Swappiness *int
}

func (c Container) validate() error {
	switch {
	case c.SharedMemoryMiB < 0 || c.SharedMemoryMiB > math.MaxInt32:
		return fmt.Errorf("shared_memory must be a whole number of MiB from 1 to %d, got %d", math.MaxInt32, c.SharedMemoryMiB)
	case c.MaxSwapMiB != nil && (*c.MaxSwapMiB < 0 || *c.MaxSwapMiB > math.MaxInt32):
		return fmt.Errorf("max_swap must be a whole number of MiB from 0 to %d, got %d", math.MaxInt32, *c.MaxSwapMiB)
	case c.Swappiness != nil && (*c.Swappiness < 0 || *c.Swappiness > 100):
		return fmt.Errorf("swappiness must be a whole number from 0 to 100, got %d", *c.Swappiness)
	}
	return nil
}

// linuxParameters is the definition's linuxParameters: each value that is
// set, independently, as Metaflow's batch_client does; nil when none is.
func (c Container) linuxParameters() *types.LinuxParameters {
	if c.SharedMemoryMiB == 0 && c.MaxSwapMiB == nil && c.Swappiness == nil {
		return nil
	}
	lp := &types.LinuxParameters{}
	if c.SharedMemoryMiB > 0 {
		lp.SharedMemorySize = aws.Int32(int32(c.SharedMemoryMiB))
	}
	if c.MaxSwapMiB != nil {
		lp.MaxSwap = aws.Int32(int32(*c.MaxSwapMiB))
	}
	if c.Swappiness != nil {
		lp.Swappiness = aws.Int32(int32(*c.Swappiness))
	}
	return lp
}

// matches reports whether an existing definition's container has c's roles
// and Linux parameters (its name says so unless someone registered another
// definition under it by hand).
func (c Container) matches(p *types.ContainerProperties) bool {
	if aws.ToString(p.JobRoleArn) != c.JobRole || aws.ToString(p.ExecutionRoleArn) != c.ExecutionRole {
		return false
	}
	want, got := c.linuxParameters(), p.LinuxParameters
	if want == nil {
		return got == nil || got.SharedMemorySize == nil && got.MaxSwap == nil && got.Swappiness == nil
	}
	if got == nil {
		return false
	}
	eq := func(a, b *int32) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	return eq(want.SharedMemorySize, got.SharedMemorySize) && eq(want.MaxSwap, got.MaxSwap) && eq(want.Swappiness, got.Swappiness)
}
