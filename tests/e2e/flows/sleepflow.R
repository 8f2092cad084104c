# A foreach of steps that sleep for a long time, each also running a child
# process (sleeper.sh in the working directory, written by the test).
library(metaflow)

start <- function(self) { self$items <- 1:3 }
nap <- function(self) {
  cat("napping", self$input, "\n")
  system(paste("sh", shQuote(file.path(getwd(), "sleeper.sh"))))
  self$done <- TRUE
}
join <- function(self, inputs) { self$n <- length(inputs) }
end <- function(self) { cat("woke up\n") }

metaflow("SleepFlowR") %>%
  step(step = "start", r_function = start, next_step = "nap", foreach = "items") %>%
  step(step = "nap", r_function = nap, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
