package batch

import "github.com/metaflow-r/metaflow/engine/graph"

// Decorator is the name of the step decorator that sends a step to AWS
// Batch (and of the executor registered under it, see Plugin).
const Decorator = "batch"

// The batch decorator: the step runs as a Batch job of this size, in this
// queue and image (defaults from METAFLOW_BATCH_JOB_QUEUE and
// METAFLOW_BATCH_CONTAINER_IMAGE), as these IAM roles (defaults from
// METAFLOW_ECS_S3_ACCESS_IAM_ROLE and METAFLOW_ECS_FARGATE_EXECUTION_ROLE),
// with these Linux parameters (MiB; swappiness 0-100). Importing the package
// makes flows with it valid.
func init() {
	graph.RegisterDecorator(graph.DecoratorSpec{
		Name:     Decorator,
		Executor: true,
		Args: map[string]graph.ArgKind{
			"cpu": graph.ArgPosInt, "memory": graph.ArgPosInt, "gpu": graph.ArgNonNegInt,
			"queue": graph.ArgText, "image": graph.ArgText,
			"iam_role": graph.ArgText, "execution_role": graph.ArgText,
			"shared_memory": graph.ArgPosInt, "max_swap": graph.ArgNonNegInt, "swappiness": graph.ArgPercent,
		},
	})
}
