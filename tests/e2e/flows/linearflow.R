# A linear flow: start -> end. Each step prints a line of its own.
library(metaflow)

start <- function(self) {
  cat("hello from start\n")
  self$greeting <- "hi there"
}

end <- function(self) {
  cat("end says", self$greeting, "\n")
}

metaflow("LinearFlowR") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
