# A step that sleeps far longer than its 2-second timeout.
library(metaflow)

start <- function(self) { self$x <- 1 }
slow <- function(self) {
  cat("going to sleep\n")
  Sys.sleep(60)
  self$y <- 2
}
end <- function(self) { cat("never reached\n") }

metaflow("TimeoutFlowR") %>%
  step(step = "start", r_function = start, next_step = "slow") %>%
  step(decorator("timeout", seconds = 2),
       step = "slow", r_function = slow, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
