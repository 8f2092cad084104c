package batch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

// JobSpec is one job to submit.
type JobSpec struct {
	Queue string
	// JobDefinition, if set, is used as is (name, name:revision or ARN) and
	// Resources become container overrides. Otherwise Image is required and
	// a job definition for Image+Resources+Container is registered once and
	// reused.
	JobDefinition string
	Image         string
	Command       []string
	Env           map[string]string
	Resources     Resources
	// Container holds the job's IAM roles and Linux parameters; its empty
	// roles get Options' defaults. Only with an Image: a given
	// JobDefinition fixes them.
	Container Container
	Labels    Labels
	// Tags are extra tags; the metaflow.* tags from Labels are always set.
	Tags map[string]string
	// TimeoutSeconds, if positive, makes Batch kill the attempt after it.
	TimeoutSeconds int
	// ArraySize, if above 1, submits an array job of that many children
	// (2 to MaxArraySize), each told its index (AWS_BATCH_JOB_ARRAY_INDEX).
	ArraySize int
}

// MaxArraySize is the most children AWS Batch allows in one array job.
const MaxArraySize = 10000

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkEnv refuses environment Batch would reject and, above all, any value
// that is one of the submitter's own credentials: jobs get theirs from the
// job role.
func checkEnv(env map[string]string, own aws.Credentials) error {
	for k, v := range env {
		if !envName.MatchString(k) {
			return fmt.Errorf("environment variable name %q is not valid", k)
		}
		if strings.HasPrefix(k, "AWS_BATCH") {
			return fmt.Errorf("environment variable %s: names starting with AWS_BATCH are reserved by Batch", k)
		}
		if v != "" && (v == own.SecretAccessKey || v == own.SessionToken) {
			return fmt.Errorf("environment variable %s holds the submitter's AWS credentials; jobs must use the job role instead", k)
		}
	}
	return nil
}

func mergeTags(l Labels, extra map[string]string) (map[string]string, error) {
	tags := labelTags(l)
	for k, v := range extra {
		if strings.HasPrefix(k, "aws:") {
			return nil, fmt.Errorf("tag %q: the aws: prefix is reserved", k)
		}
		if _, ok := tags[k]; ok {
			return nil, fmt.Errorf("tag %q is set by metaflow", k)
		}
		tags[k] = v
	}
	if len(tags) > 50 {
		// Batch's limit per resource.
		return nil, fmt.Errorf("%d tags, Batch allows 50", len(tags))
	}
	return tags, nil
}

// Submit submits one job and returns its id. With an Image it costs one
// SubmitJob call, plus one or two calls the first time an image+resources
// pair is used by this Client.
func (c *Client) Submit(ctx context.Context, spec JobSpec) (string, error) {
	if spec.Queue == "" {
		return "", errors.New("submit: no job queue")
	}
	if spec.Labels.Flow == "" {
		return "", errors.New("submit: no flow name in labels")
	}
	if spec.Labels.Attempt < 0 {
		return "", fmt.Errorf("submit: negative attempt %d", spec.Labels.Attempt)
	}
	res := spec.Resources.WithDefaults()
	if err := res.validate(); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	if err := spec.Container.validate(); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	if spec.JobDefinition != "" && spec.Container != (Container{}) {
		return "", fmt.Errorf("submit: job definition %s fixes the job's IAM roles and Linux parameters: give an image instead to set them", spec.JobDefinition)
	}
	if spec.ArraySize < 0 || spec.ArraySize > MaxArraySize {
		return "", fmt.Errorf("submit: an array job of %d children; Batch allows 2 to %d", spec.ArraySize, MaxArraySize)
	}
	key := jobKey(spec.Labels)
	if len(key) > maxKeyLen {
		return "", fmt.Errorf("submit: task identity %q is longer than %d characters", key, maxKeyLen)
	}
	var own aws.Credentials
	if c.creds != nil {
		// Cached by the SDK; the error case means there is nothing to leak.
		own, _ = c.creds.Retrieve(ctx)
	}
	if err := checkEnv(spec.Env, own); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	tags, err := mergeTags(spec.Labels, spec.Tags)
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}

	in := &batch.SubmitJobInput{
		JobName:  aws.String(nameFromKey(key)),
		JobQueue: aws.String(spec.Queue),
		Tags:     tags,
		// Tags also go to the ECS task, for cost allocation.
		PropagateTags:      aws.Bool(true),
		ContainerOverrides: &types.ContainerOverrides{Command: spec.Command, Environment: envPairs(spec.Env)},
	}
	if spec.ArraySize > 1 {
		in.ArrayProperties = &types.ArrayProperties{Size: aws.Int32(int32(spec.ArraySize))}
	}
	if spec.TimeoutSeconds > 0 {
		in.Timeout = &types.JobTimeout{AttemptDurationSeconds: aws.Int32(int32(spec.TimeoutSeconds))}
	}
	if spec.JobDefinition != "" {
		in.JobDefinition = aws.String(spec.JobDefinition)
		in.ContainerOverrides.ResourceRequirements = res.requirements()
	} else {
		if spec.Image == "" {
			return "", errors.New("submit: neither a job definition nor an image")
		}
		ctr := spec.Container
		if ctr.JobRole == "" {
			ctr.JobRole = c.opts.JobRoleARN
		}
		if ctr.ExecutionRole == "" {
			ctr.ExecutionRole = c.opts.ExecutionRoleARN
		}
		arn, err := c.jobDefinition(ctx, spec.Image, res, ctr)
		if err != nil {
			return "", fmt.Errorf("submit %s: %w", *in.JobName, err)
		}
		in.JobDefinition = aws.String(arn)
	}
	out, err := c.batch.SubmitJob(ctx, in)
	if err != nil {
		return "", fmt.Errorf("submit %s to queue %s: %w", *in.JobName, spec.Queue, err)
	}
	return aws.ToString(out.JobId), nil
}

func envPairs(env map[string]string) []types.KeyValuePair {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.KeyValuePair, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.KeyValuePair{Name: aws.String(k), Value: aws.String(env[k])})
	}
	return out
}
