# Benchmark flow: a 200-split foreach of trivial steps.
library(metaflow)
metaflow("Foreach200BenchR") %>%
  step(step = "start", r_function = function(self) self$xs <- seq_len(200),
       next_step = "work", foreach = "xs") %>%
  step(step = "work", r_function = function(self) self$y <- self$input, next_step = "join") %>%
  step(step = "join", r_function = function(self, inputs) self$n <- length(inputs),
       next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = function(self) stopifnot(self$n == 200)) %>%
  run()
