# A flow whose middle step fails until a file named "fixed" exists in the
# working directory. start counts its executions in start_count.txt.
library(metaflow)

explode <- function() stop("boom")

start <- function(self) {
  n <- if (file.exists("start_count.txt")) as.integer(readLines("start_count.txt")) else 0L
  writeLines(as.character(n + 1L), "start_count.txt")
  self$n <- n + 1L
}

fragile <- function(self) {
  if (!file.exists("fixed")) explode()
  self$result <- self$n * 10
}

end <- function(self) {
  cat("result is", self$result, "\n")
}

metaflow("ResumeFlowR") %>%
  step(step = "start", r_function = start, next_step = "fragile") %>%
  step(step = "fragile", r_function = fragile, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
