# The repository root (for proto/engine.proto): METAFLOW_REPO_ROOT, or the
# first parent of the working directory that has proto/engine.proto.
repo_root <- function() {
  root <- Sys.getenv("METAFLOW_REPO_ROOT")
  if (nzchar(root)) return(normalizePath(root, mustWork = FALSE))
  dir <- normalizePath(getwd())
  repeat {
    if (file.exists(file.path(dir, "proto", "engine.proto"))) return(dir)
    parent <- dirname(dir)
    if (parent == dir) return("")
    dir <- parent
  }
}

# A small flow used by several tests.
example_flow <- function() {
  metaflow("ExampleFlow") %>%
    parameter("alpha", default = 0.01, help = "learning rate") %>%
    parameter("epochs", default = 10L) %>%
    parameter("verbose", default = FALSE) %>%
    parameter("label", default = "x") %>%
    parameter("learning_rate", default = 0.5) %>%
    step(decorator("retry", times = 3), step = "start",
         r_function = function(self) self$xs <- 1:3,
         next_step = "a", foreach = "xs") %>%
    step(step = "a", r_function = function(self) self$y <- self$input,
         next_step = "join") %>%
    step(step = "join", join = TRUE, next_step = "end",
         r_function = function(self, inputs) self$total <- 1) %>%
    step(step = "end")
}

# Sets environment variables until the calling test ends.
local_envvars <- function(..., .frame = parent.frame()) {
  vars <- c(...)
  old <- Sys.getenv(names(vars), unset = NA, names = TRUE)
  restore <- function() {
    for (k in names(old)) {
      if (is.na(old[[k]])) Sys.unsetenv(k) else do.call(Sys.setenv, as.list(old[k]))
    }
  }
  do.call(base::on.exit, list(call("restore_env", restore), add = TRUE), envir = .frame)
  do.call(Sys.setenv, as.list(vars))
}
restore_env <- function(f) f()
