// Package batch talks to AWS Batch for metaflow's `--with batch`: it submits
// one job per task attempt, polls job states in batches of 100, lists and
// terminates the jobs of one flow, reads job logs from CloudWatch Logs and
// checks before submission that a job queue can ever run a request.
//
// Configuration comes from the AWS SDK's default chain only: credentials,
// region, and endpoints (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_BATCH,
// AWS_ENDPOINT_URL_CLOUDWATCH_LOGS). The package has no endpoint setting of
// its own, so tests against moto_server and real AWS use the same code path.
//
// Job names carry the task identity (flow, user, run, step, task, attempt)
// in Batch's [A-Za-z0-9_-]{1,128} alphabet, so `batch list` and `batch kill`
// can select one flow's jobs exactly from ListJobs summaries, which carry no
// tags. The same identity is also attached as tags.
//
// The engine sees the package through the scheduler's executor seam only:
// Plugin (plugin.go) is the batch decorator's scheduler.Plugin and makes the
// Executor; it also lists and kills jobs (jobs.go, scheduler.JobManager) and
// reads running jobs' logs (attemptlogs.go, scheduler.LogSource). Files:
// decorator.go (the batch decorator), config.go (settings), executor.go (the
// executor: job shape, queue checks, Preflight), submit.go (uploads and
// submission of one attempt), bootstrap.go (the engine binary jobs run),
// poll.go (job states), collect.go (a finished job's outputs), logs.go (live
// logs), client*.go, jobdef.go, queue.go, names.go (the Batch API),
// taskrunner.go (inside the job).
package batch
