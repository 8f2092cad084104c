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

metaflow("WarmFlowR") %>%
  step(step = "start", r_function = function(self) self$xs <- 1:4,
       next_step = "work", foreach = "xs") %>%
  step(step = "work", r_function = function(self) {
    cat(parent(), sprintf("seed=%.12f", runif(1)), "\n")
    self$y <- self$input
  }, next_step = "join") %>%
  step(environment_variables(METAFLOW_WARM_START = "0"), step = "join",
       r_function = function(self, inputs) {
         cat(parent(), "\n")
         self$n <- length(inputs)
       }, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = function(self) stopifnot(self$n == 4)) %>%
  run()
