package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

// jobDefName names the job definition for image+resources+role. The hash
// covers everything in the definition, so a name never refers to two
// different contents and a definition registered by an earlier process (or
// another user) can be reused as is.
func jobDefName(image string, r Resources, role string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("v1\x00%s\x00%d\x00%d\x00%d\x00%s", image, r.VCPUs, r.MemoryMB, r.GPUs, role)))
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

// jobDefinition returns the ARN of the job definition for image and r,
// registering it if needed. Concurrent callers share one lookup.
func (c *Client) jobDefinition(ctx context.Context, image string, r Resources) (string, error) {
	name := jobDefName(image, r, c.opts.JobRoleARN)
	c.mu.Lock()
	d, ok := c.defs[name]
	if !ok {
		d = &jobDef{}
		c.defs[name] = d
	}
	c.mu.Unlock()
	d.once.Do(func() { d.arn, d.err = c.ensureJobDefinition(ctx, name, image, r) })
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

func (c *Client) ensureJobDefinition(ctx context.Context, name, image string, r Resources) (string, error) {
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
		if d.ContainerProperties == nil || aws.ToString(d.ContainerProperties.Image) != image {
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
	if c.opts.JobRoleARN != "" {
		props.JobRoleArn = aws.String(c.opts.JobRoleARN)
	}
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
