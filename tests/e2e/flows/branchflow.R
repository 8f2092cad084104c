# A static branch joined with merge_artifacts(), built with the native |> pipe.
library(metaflow)

start <- function(self) {
  self$shared <- "from start"
}

a <- function(self) {
  self$x <- 1
  self$only_a <- "A"
}

b <- function(self) {
  self$x <- 2
}

join <- function(self, inputs) {
  # x differs between the branches: assign it before merging the rest.
  self$x <- inputs$a$x + inputs$b$x
  merge_artifacts(self, inputs)
}

end <- function(self) {
  cat("x is", self$x, "\n")
  cat("shared is", self$shared, "\n")
  cat("only_a is", self$only_a, "\n")
}

metaflow("BranchFlowR") |>
  step(step = "start", r_function = start, next_step = c("a", "b")) |>
  step(step = "a", r_function = a, next_step = "join") |>
  step(step = "b", r_function = b, next_step = "join") |>
  step(step = "join", r_function = join, next_step = "end", join = TRUE) |>
  step(step = "end", r_function = end) |>
  run()
