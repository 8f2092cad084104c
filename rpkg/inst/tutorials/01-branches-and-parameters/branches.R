# Episode 01: parameters, and a static branch joined back together.
#
#   Rscript branches.R show                       # steps and parameters
#   Rscript branches.R run                        # defaults
#   Rscript branches.R run --alpha 0.1 --greeting Hello --verbose
#
# start splits into two branches, a and b, that run at the same time. The
# join step gets the artifacts of both through `inputs`; end sees what the
# join kept.

library(metaflow)

start <- function(self) {
  # Parameters are read-only artifacts, available in every step.
  if (self$alpha < 0 || self$alpha > 1) {
    stop("alpha must be between 0 and 1, not ", self$alpha)
  }
  self$budget <- 100
  cat(sprintf("%s from start: splitting %g between a and b\n", self$greeting,
              self$budget))
}

# The two branches compute an artifact of the same name, x.
a <- function(self) {
  self$x <- self$budget * self$alpha
  self$note_from_a <- sprintf("a took %g%%", 100 * self$alpha)
}

b <- function(self) {
  self$x <- self$budget * (1 - self$alpha)
}

join <- function(self, inputs) {
  # One branch by its step name...
  self$x_a <- inputs$a$x
  self$x_b <- inputs$b$x
  # ...or the same artifact of every branch, as a list.
  xs <- unlist(gather_inputs(inputs, "x"))
  self$total <- sum(xs)
  if (self$verbose) {
    cat("x of each branch: ", paste(xs, collapse = ", "), "\n", sep = "")
  }
  # A join starts with no artifacts but the parameters. Carry over the
  # others: budget (the same in both branches) and note_from_a (only in a).
  # x differs between the branches, so it is left out.
  merge_artifacts(self, inputs, exclude = c("x"))
}

end <- function(self) {
  cat(sprintf("%s! a got %g and b got %g of %g (total %g). %s.\n",
              self$greeting, self$x_a, self$x_b, self$budget, self$total,
              self$note_from_a))
}

metaflow("BranchParameterFlow") %>%
  parameter("alpha", help = "share of the budget that goes to branch a",
            default = 0.5) %>%
  parameter("greeting", help = "how the flow says hello", type = "str",
            default = "Hi") %>%
  parameter("verbose", help = "print the branches' values in the join",
            is_flag = TRUE) %>%
  step(step = "start", r_function = start, next_step = c("a", "b")) %>%
  step(step = "a", r_function = a, next_step = "join") %>%
  step(step = "b", r_function = b, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
