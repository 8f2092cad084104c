# Parameters: a numeric one with a default and a required one.
library(metaflow)

start <- function(self) {
  cat("alpha is", self$alpha, "of class", class(self$alpha), "\n")
  cat("dataset is", self$dataset, "\n")
  self$scaled <- self$alpha * 100
}

end <- function(self) {
  cat("scaled is", self$scaled, "\n")
}

metaflow("ParamFlowR") %>%
  parameter("alpha", default = 0.5, help = "learning rate") %>%
  parameter("dataset", required = TRUE, help = "which data to use") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
