# Episode 00: a first flow, three steps in a line.
#
#   Rscript helloworld.R show    # the steps, as the engine sees them
#   Rscript helloworld.R run     # run it
#
# Every flow is a graph of steps. It begins with a step named "start" and
# finishes with a step named "end"; here one step, "hello", sits between
# them. Each step runs as its own R process, so anything a later step needs
# is stored on `self` (an artifact) rather than in a variable.

library(metaflow)

start <- function(self) {
  cat("HelloFlow is starting.\n")
  # An artifact: saved when the step ends, readable by every later step.
  self$greeting <- "Hi"
}

hello <- function(self) {
  cat("Metaflow says: ", self$greeting, "!\n", sep = "")
}

end <- function(self) {
  cat("HelloFlow is all done.\n")
}

metaflow("HelloFlow") %>%
  step(step = "start", r_function = start, next_step = "hello") %>%
  step(step = "hello", r_function = hello, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
