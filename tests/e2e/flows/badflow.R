# Broken flows, one per E2E_CASE, for the error tests. Every case but
# "duplicate" (a step defined twice: the later replaces the earlier, with a
# message, and the flow runs) must be refused with a one-line error (graph and
# decorator errors before anything is written; artifact errors when the
# offending task runs).
library(metaflow)

noop <- function(self) invisible(NULL)
case <- Sys.getenv("E2E_CASE")

flow <- switch(case,
  no_start = metaflow("BadFlowR") %>%
    step(step = "begin", r_function = noop, next_step = "end") %>%
    step(step = "end", r_function = noop),

  no_end = metaflow("BadFlowR") %>%
    step(step = "start", r_function = noop, next_step = "finish") %>%
    step(step = "finish", r_function = noop),

  unknown_next = metaflow("BadFlowR") %>%
    step(step = "start", r_function = noop, next_step = "nowhere") %>%
    step(step = "end", r_function = noop),

  cycle = metaflow("BadFlowR") %>%
    step(step = "start", r_function = noop, next_step = "a") %>%
    step(step = "a", r_function = noop, next_step = "b") %>%
    step(step = "b", r_function = noop, next_step = c("a", "end")) %>%
    step(step = "end", r_function = noop),

  unreachable = metaflow("BadFlowR") %>%
    step(step = "start", r_function = noop, next_step = "end") %>%
    step(step = "lonely", r_function = noop, next_step = "end") %>%
    step(step = "end", r_function = noop),

  duplicate = metaflow("BadFlowR") %>%
    step(step = "start", r_function = noop, next_step = "a") %>%
    step(step = "a", r_function = noop, next_step = "end") %>%
    step(step = "a", r_function = noop, next_step = "end") %>%
    step(step = "end", r_function = noop),

  join_one_parent = metaflow("BadFlowR") %>%
    step(step = "start", r_function = noop, next_step = c("a", "b")) %>%
    step(step = "a", r_function = noop, next_step = "j") %>%
    step(step = "b", r_function = noop, next_step = "end") %>%
    step(step = "j", r_function = function(self, inputs) NULL, next_step = "end",
         join = TRUE) %>%
    step(step = "end", r_function = noop),

  foreach_missing = metaflow("BadFlowR") %>%
    step(step = "start", r_function = function(self) self$x <- 1,
         next_step = "work", foreach = "nothere") %>%
    step(step = "work", r_function = noop, next_step = "join") %>%
    step(step = "join", r_function = function(self, inputs) NULL, next_step = "end",
         join = TRUE) %>%
    step(step = "end", r_function = noop),

  foreach_function = metaflow("BadFlowR") %>%
    step(step = "start", r_function = function(self) self$fn <- function(x) x,
         next_step = "work", foreach = "fn") %>%
    step(step = "work", r_function = noop, next_step = "join") %>%
    step(step = "join", r_function = function(self, inputs) NULL, next_step = "end",
         join = TRUE) %>%
    step(step = "end", r_function = noop),

  unknown_decorator = metaflow("BadFlowR") %>%
    step(decorator("bogus"), step = "start", r_function = noop, next_step = "end") %>%
    step(step = "end", r_function = noop),

  negative_memory = metaflow("BadFlowR") %>%
    step(decorator("resources", memory = -1), step = "start", r_function = noop,
         next_step = "end") %>%
    step(step = "end", r_function = noop),

  text_cpu = metaflow("BadFlowR") %>%
    step(decorator("resources", cpu = "a"), step = "start", r_function = noop,
         next_step = "end") %>%
    step(step = "end", r_function = noop),

  reserved_artifact = metaflow("BadFlowR") %>%
    step(step = "start", r_function = function(self) self$input <- 1, next_step = "end") %>%
    step(step = "end", r_function = noop),

  invalid_artifact = metaflow("BadFlowR") %>%
    step(step = "start", r_function = function(self) self[["my var"]] <- 1,
         next_step = "end") %>%
    step(step = "end", r_function = noop),

  stop("unknown E2E_CASE '", case, "'")
)

run(flow)
