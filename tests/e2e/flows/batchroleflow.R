# A step on AWS Batch with Metaflow's IAM role and Linux parameter arguments
# of batch(); the test reads them back from the submitted job's definition
# (moto records them there but applies none of them to the container).
library(metaflow)

start <- function(self) {
  self$job <- Sys.getenv("AWS_BATCH_JOB_ID")
  # As Metaflow R flows do in Batch steps (the image has base R only).
  self$md <- get_metadata()
  self$ns <- get_namespace()
  self$has_pkg <- requireNamespace("metaflow", quietly = TRUE)
  cat("start ran in job", self$job, "\n")
}

end <- function(self) {
  message("start's job was ", if (nzchar(self$job)) "a Batch job" else "local")
  message("start saw metadata ", self$md, " namespace ", self$ns, " package ", self$has_pkg)
}

metaflow("BatchRoleFlowR") %>%
  step(
    batch(iam_role = "arn:aws:iam::123456789012:role/step-role",
          execution_role = "arn:aws:iam::123456789012:role/step-exec",
          shared_memory = 256, max_swap = 512, swappiness = 10, memory = 1000),
    step = "start",
    r_function = start,
    next_step = "end"
  ) %>%
  step(
    step = "end",
    r_function = end
  ) %>%
  run()
