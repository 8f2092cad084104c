# start fails on its first attempt only.
library(metaflow)

start <- function(self) {
  cat("attempt", current("retry_count"), "\n")
  if (current("retry_count") == 0) stop("first attempt fails")
  self$attempts_needed <- current("retry_count") + 1
}

end <- function(self) {
  cat("needed", self$attempts_needed, "attempts\n")
}

metaflow("RetryFlowR") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
