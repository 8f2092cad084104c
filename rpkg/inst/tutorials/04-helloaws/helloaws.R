# Episode 04-helloaws: look Mom, we're in the cloud.
#
#   Rscript helloaws.R show
#   Rscript helloaws.R run
#
# A linear flow like episode 00, but its `hello` step runs on AWS Batch: the
# batch decorator asks for a job of 2 CPUs and 2048 MB of memory, and the
# retry decorator runs the step again, up to twice, if its job fails (a
# lost spot instance, say). start and end run on your machine. Configure
# AWS first: see README.md.

library(metaflow)

start <- function(self) {
  message("HelloAWS is starting.")
  message("Using metadata provider: ", get_metadata())
}

hello <- function(self) {
  self$message <- "We're on the cloud! Metaflow says: Hi!"
  print(self$message)
  # AWS Batch sets AWS_BATCH_JOB_ID in its jobs.
  message("Running in AWS Batch job ", Sys.getenv("AWS_BATCH_JOB_ID", "(none: not on Batch)"))
  message("Using metadata provider: ", get_metadata())
}

end <- function(self) {
  message("HelloAWS is all done.")
}

metaflow("HelloAWSFlow") %>%
  step(step = "start", r_function = start, next_step = "hello") %>%
  step(retry(times = 2),
       batch(cpu = 2, memory = 2048),
       step = "hello", r_function = hello, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
