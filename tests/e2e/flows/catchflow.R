# Step a always fails; with --with catch:var=err the flow goes on.
library(metaflow)

start <- function(self) { self$x <- 1 }
a <- function(self) { stop("kaboom in a") }
end <- function(self) {
  cat("caught:", self$err, "\n")
}

metaflow("CatchFlowR") %>%
  step(step = "start", r_function = start, next_step = "a") %>%
  step(step = "a", r_function = a, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
