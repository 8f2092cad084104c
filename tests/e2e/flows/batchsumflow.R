# The seed's BigSumFlowR with start on AWS Batch (a small matrix: the test
# runs against moto with a local base-R image).
library(metaflow)

start <- function(self) {
  big_matrix <- matrix(as.numeric(seq_len(self$size * self$size)), self$size)
  self$sum <- sum(big_matrix)
  self$job <- Sys.getenv("AWS_BATCH_JOB_ID")
  cat("start ran in job", self$job, "\n")
}

end <- function(self) {
  message("sum is: ", self$sum)
  message("start's job was ", if (nzchar(self$job)) "a Batch job" else "local")
  message("end's job is ", if (nzchar(Sys.getenv("AWS_BATCH_JOB_ID"))) "a Batch job" else "local")
}

metaflow("BigSumFlowR") %>%
  parameter("size", default = 200L, help = "rows (and columns) of the matrix") %>%
  step(
    decorator("batch", memory = 1000, cpu = 1),
    step = "start",
    r_function = start,
    next_step = "end"
  ) %>%
  step(
    step = "end",
    r_function = end
  ) %>%
  run()
