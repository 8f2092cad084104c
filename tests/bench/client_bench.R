# Client API latency with one engine per R session (issue 8's targets):
# after the session's first call, flow_client$new() and run_client$new()
# <= 20 ms, a small artifact <= 20 ms, walking 100 runs' successful and
# finished_at <= 2 s. The baseline, measured in the same run, is a bare
# `Rscript -e 0` (what one engine start per call used to cost, and more).
#
#   CLIENT_BENCH_RUNS=100 Rscript tests/bench/client_bench.R
# (an environment variable: run() reads the script's command line.)

suppressPackageStartupMessages(library(metaflow))
n_runs <- as.integer(Sys.getenv("CLIENT_BENCH_RUNS", "100"))

dir <- tempfile("client-bench-")
dir.create(dir)
old <- setwd(dir)
on.exit({ setwd(old); unlink(dir, recursive = TRUE) })

start <- function(self) self$x <- 42L
flow <- metaflow("ClientBenchFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end")
cat(sprintf("making %d runs...\n", n_runs))
invisible(capture.output(for (i in seq_len(n_runs)) run(flow, max_workers = 2)))

ms <- function(expr, reps = 20) {
  f <- substitute(expr)
  env <- parent.frame()
  t <- replicate(reps, system.time(eval(f, env))[["elapsed"]])
  1000 * stats::median(t)
}

bare <- ms(system2(file.path(R.home("bin"), "Rscript"), c("-e", "0"), stdout = FALSE), reps = 5)
metaflow:::stop_session_engine()
first <- 1000 * system.time(flow_client$new("ClientBenchFlow"))[["elapsed"]]
fc <- ms(flow_client$new("ClientBenchFlow"))
rc <- ms(run_client$new("ClientBenchFlow", "1"))
r <- run_client$new("ClientBenchFlow", "1")
# A task client made anew each time: its GetTask call, then the blob read.
art <- ms(r$step("start")$task(r$step("start")$a_task)$artifact("x"))
walk <- 1000 * system.time({
  f <- flow_client$new("ClientBenchFlow")
  for (id in f$runs) {
    rr <- f$run(id)
    invisible(c(rr$successful, rr$finished_at))
  }
})[["elapsed"]]

report <- function(what, value, target) {
  cat(sprintf("%-44s %8.1f ms  (target <= %g ms: %s)\n", what, value, target,
              if (value <= target) "met" else "MISSED"))
}
cat(sprintf("%-44s %8.1f ms  (baseline)\n", "bare Rscript -e 0", bare))
cat(sprintf("%-44s %8.1f ms  (starts the session's engine)\n", "first call of the session", first))
report("flow_client$new() after the first call", fc, 20)
report("run_client$new() after the first call", rc, 20)
report("a small artifact", art, 20)
report(sprintf("walking %d runs' successful and finished_at", length(f$runs)), walk, 2000)
