# Benchmark flow: a 200-split foreach of trivial steps; with WARM_BENCH_PKG
# set, each split's step attaches that package itself (library(<pkg>)).
library(metaflow)
work <- function(self) self$y <- self$input
if (nzchar(Sys.getenv("WARM_BENCH_PKG"))) {
  work <- eval(substitute(function(self) {
    suppressPackageStartupMessages(library(PKG))
    self$y <- self$input
  }, list(PKG = as.name(Sys.getenv("WARM_BENCH_PKG")))))
}
metaflow("Warm200BenchR") %>%
  step(step = "start", r_function = function(self) self$xs <- seq_len(200),
       next_step = "work", foreach = "xs") %>%
  step(step = "work", r_function = work, next_step = "join") %>%
  step(step = "join", r_function = function(self, inputs) self$n <- length(inputs),
       next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = function(self) stopifnot(self$n == 200)) %>%
  run()
