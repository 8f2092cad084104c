# The seed's example, sized by a parameter so it fits a laptop:
#   Rscript bigsumflow.R run                # a 2000 x 2000 matrix (~32 MB)
#   Rscript bigsumflow.R run --size 80000   # the 48 GB of the docs (needs a big box)
library(metaflow)

start <- function(self) {
  big_matrix <- matrix(rexp(self$size * self$size), self$size)
  self$sum <- sum(big_matrix)
}

end <- function(self) {
  message("sum is: ", self$sum)
}

metaflow("BigSumFlowR") %>%
  parameter("size", default = 2000L, help = "rows (and columns) of the random matrix") %>%
  step(
    decorator("resources", memory = 60000, cpu = 1),
    step = "start",
    r_function = start,
    next_step = "end"
  ) %>%
  step(
    step = "end",
    r_function = end
  ) %>%
  run()
