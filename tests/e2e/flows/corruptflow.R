# A flow whose spoil step damages the blob of start's artifact x (one byte
# flipped in place, as bit rot or a stray write would) while the file
# "spoil" exists in the working directory. With SPOIL_MODE=runtime it then
# reads self$x itself (the task's own check); otherwise middle reads it
# (the engine's check before the task starts).
library(metaflow)

start <- function(self) {
  self$x <- as.numeric(1:1000)
  self$start_task <- current("task_id")
}

spoil <- function(self) {
  if (!file.exists("spoil")) return(invisible())
  flow <- current("flow_name")
  idx <- paste(readLines(file.path(".metaflow", flow, current("run_id"), "start",
                                   self$start_task, "_task.json"), warn = FALSE),
               collapse = "")
  sha <- sub('.*"x"\\s*:\\s*\\{\\s*"sha"\\s*:\\s*"([0-9a-f]{64})".*', "\\1", idx)
  blob <- file.path(".metaflow", flow, "data", substr(sha, 1, 2), sha)
  con <- file(blob, "r+b")
  at <- file.size(blob) - 1
  seek(con, at, rw = "read")
  b <- readBin(con, "raw", 1)
  seek(con, at, rw = "write")
  writeBin(xor(b, as.raw(1)), con)
  close(con)
  cat("spoiled", sha, "\n")
  if (Sys.getenv("SPOIL_MODE") == "runtime") cat("sum is", sum(self$x), "\n")
}

middle <- function(self) {
  cat("sum is", sum(self$x), "\n")
}

end <- function(self) {
  cat("end sum is", sum(self$x), "\n")
}

metaflow("CorruptFlowR") %>%
  step(step = "start", r_function = start, next_step = "spoil") %>%
  step(step = "spoil", r_function = spoil, next_step = "middle") %>%
  step(step = "middle", r_function = middle, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
