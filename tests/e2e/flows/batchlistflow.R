# A small local flow whose AWS Batch jobs test-batch-list.R lists and kills
# (the jobs themselves are made in moto by the test).
library(metaflow)

metaflow("BatchListFlowR") %>%
  step(step = "start", r_function = function(self) self$x <- 1, next_step = "end") %>%
  step(step = "end", r_function = function(self) cat("x is", self$x, "\n")) %>%
  run()
