# Warm task starts: each task says which process started it. The join opts
# out with the environment decorator and starts as a fresh Rscript.
library(metaflow)

parent <- function() {
  ppid <- strsplit(readLines("/proc/self/stat"), " ")[[1]][4]
  cmd <- readBin(file.path("/proc", ppid, "cmdline"), "raw", 4096)
  cmd <- paste(rawToChar(cmd[cmd != as.raw(0)], multiple = TRUE), collapse = "")
  sprintf("parent=%s %s", ppid, if (grepl("zygote.R", cmd, fixed = TRUE)) "zygote" else
    if (grepl("metaflow-engine", cmd, fixed = TRUE)) "engine" else cmd)
}

# After the step's code has called the runtime (self$..., inputs[[i]]$...):
# how many runtime functions were byte-compiled (none: the runtime turns the
# JIT off while it works, or every task would compile it again), and the
# JIT level the step's code runs with (R's own).
runtime_state <- function() {
  f <- get("$.metaflow_self", envir = as.environment("metaflow:runtime"))
  e <- environment(f) # the runtime's, or its JIT-off wrapper's
  if (is.function(e$runtime_fn)) e <- environment(e$runtime_fn)
  rt <- get("rt", envir = e)
  compiled <- sum(unlist(eapply(rt, function(g) {
    is.function(g) && any(grepl("^<bytecode", utils::capture.output(print(g))))
  })))
  sprintf("compiled=%d jit=%d", compiled, compiler::enableJIT(-1))
}

metaflow("WarmFlowR") %>%
  step(step = "start", r_function = function(self) {
    self$xs <- 1:4
    self$nested <- list(a = list(1, "x", list(TRUE)), b = list(list(2L), letters))
  },
       next_step = "work", foreach = "xs") %>%
  step(step = "work", r_function = function(self) {
    cat(parent(), sprintf("seed=%.12f", runif(1)), "\n")
    self$y <- self$input
    stopifnot(identical(self$nested$b[[2]], letters)) # the decoder recurses
    cat(runtime_state(), "\n")
  }, next_step = "join") %>%
  step(environment_variables(METAFLOW_WARM_START = "0"), step = "join",
       r_function = function(self, inputs) {
         cat(parent(), "\n")
         self$n <- length(inputs)
         stopifnot(inputs[[1]]$y == 1)
         cat(runtime_state(), "\n")
       }, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = function(self) stopifnot(self$n == 4)) %>%
  run()
