# Step a always fails; with --with catch:var=err (or --with catch) the flow
# goes on.
library(metaflow)

start <- function(self) { self$x <- 1 }
a <- function(self) { stop("kaboom in a") }
end <- function(self) {
  cat("caught:", if ("err" %in% names(self)) self$err else "(not stored)", "\n")
}

metaflow("CatchFlowR") %>%
  step(step = "start", r_function = start, next_step = "a") %>%
  step(step = "a", r_function = a, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
