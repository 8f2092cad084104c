# A flow written for Metaflow's own R package, unchanged: decorator
# wrappers, parameter() in Metaflow's signature, gather_inputs(), named
# inputs, merge_artifacts(exclude = list()), current() and a step without
# r_function; the helpers called by the package's name; the flow built in
# place over several statements (as over notebook chunks) and run through
# the global variable metaflow() makes.
library(metaflow)

start <- function(self) {
  self$shared <- "same everywhere"
  self$who <- current("username")
  self$ns <- current("namespace")
  self$where <- current("pathspec")
  self$flow_name <- current("flow_name")
  self$none_param_is_null <- is.null(self$nothing)
  self$words_seen <- self$words
  self$pkg_current <- identical(metaflow::current("run_id"), current("run_id"))
  self$origin_is_null <- is.null(current("origin_run_id")) && isTRUE(current("is_running_flow")) &&
    identical(current("tempdir"), tempdir()) && identical(current()$retry_count, current("retry_count")) &&
    "origin_run_id" %in% names(current()) && is.null(current()$origin_run_id)
  # This run, read through the client while it runs: not finished, no end time.
  me <- run_client$new(paste(current("flow_name"), current("run_id"), sep = "/"))
  self$running_read <- paste(me$status, me$finished, is.null(me$finished_at))
}

branch_a <- function(self) {
  self$x <- 1
  self$animal <- Sys.getenv("CUTEST_ANIMAL")
  self$retries <- current("retry_count")
}

branch_b <- function(self) {
  self$x <- 2
  self$animal <- "none"
}

risky <- function(self) {
  stop("boom in risky")
}

join <- function(self, inputs) {
  self$xs <- unlist(gather_inputs(inputs, "x"))
  self$a_x <- inputs$branch_a$x
  self$b_x <- inputs$branch_b$x
  metaflow::merge_artifacts(flow = self, inputs, exclude = list("x", "animal", "retries"))
  # (again, named self as some write it: nothing is left to merge)
  merge_artifacts(self = self, inputs, exclude = list("x", "animal", "retries"))
}

end <- function(self) {
  cat("seed:", self$seed, "\n")
  cat("count:", self$count, "class", class(self$count), "\n")
  cat("ratio:", self$ratio, "class", class(self$ratio), "\n")
  cat("verbose:", self$verbose, "\n")
  cat("words:", paste(self$words, collapse = "|"), "\n")
  cat("xs:", self$xs, "a_x:", self$a_x, "b_x:", self$b_x, "\n")
  cat("shared:", self$shared, "\n")
  cat("who:", self$who, "ns:", self$ns, "\n")
  cat("where:", self$where, "\n")
  cat("none param is NULL:", self$none_param_is_null, "\n")
  cat("caught:", self$risky_failed, "\n")
  cat("package current:", self$pkg_current, "origin NULL:", self$origin_is_null, "\n")
  cat("while running:", self$running_read, "\n")
}

flow <- metaflow("CompatFlowR")
flow %>%
  parameter("count", type = "int", default = 3) %>%
  parameter("ratio", type = "float", default = 0.5, help = "a ratio") %>%
  parameter("verbose", is_flag = TRUE) %>%
  parameter("words", separator = ",", default = "a,b") %>%
  parameter("seed", default = function() 40L + 2L) %>%
  parameter("nothing")
flow %>%
  step(step = "start", r_function = start, next_step = c("branch_a", "branch_b")) %>%
  step(environment_variables(CUTEST_ANIMAL = "corgi"), retry(times = 1, minutes_between_retries = 0),
       resources(cpu = 1, memory = 1000),
       step = "branch_a", r_function = branch_a, next_step = "join") %>%
  step(step = "branch_b", r_function = branch_b, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "middle", join = TRUE) %>%
  step(step = "middle", next_step = "risky")
step(flow, catch(var = "risky_failed", print_exception = FALSE), retry(times = 0),
     step = "risky", r_function = risky, next_step = "end")
step(flow, step = "end", r_function = end)
run(CompatFlowR)
