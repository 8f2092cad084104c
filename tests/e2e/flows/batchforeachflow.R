# A small foreach for --with batch: 5 splits, squared, summed in a join.
library(metaflow)

start <- function(self) { self$params <- 1:5 }
work  <- function(self) {
  self$sq <- self$input^2
  cat("work", self$input, "squared is", self$sq, "in a job:", nzchar(Sys.getenv("AWS_BATCH_JOB_ID")), "\n")
}
join  <- function(self, inputs) { self$total <- sum(sapply(inputs, function(i) i$sq)) }
end   <- function(self) { message("total is: ", self$total) }

metaflow("BatchForeachFlowR") %>%
  step(step = "start", r_function = start, next_step = "work", foreach = "params") %>%
  step(step = "work", r_function = work, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
