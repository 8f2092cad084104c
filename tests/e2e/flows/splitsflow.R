# A foreach of 101 elements: one more than the default --max-num-splits.
library(metaflow)

start <- function(self) { self$items <- 1:101 }
work  <- function(self) { self$y <- self$input }
join  <- function(self, inputs) { self$n <- length(inputs) }
end   <- function(self) { cat("joined", self$n, "splits\n") }

metaflow("SplitsFlowR") %>%
  step(step = "start", r_function = start, next_step = "work", foreach = "items") %>%
  step(step = "work", r_function = work, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
