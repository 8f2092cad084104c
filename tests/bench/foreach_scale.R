# A foreach split's cost must not grow with the number of splits (issue 10):
# a foreach over a list of N small records (N = FOREACH_SPLITS, default
# 2000) against one of 200, same machine, same run. Reports the median
# duration of a split task (from its record), the whole run's time, the
# engine's own CPU time per task and its peak memory, that the join saw
# every input, and how long `run$step("work")$tasks` and a split's logs take.
#
#   FOREACH_SPLITS=2000 Rscript tests/bench/foreach_scale.R
# (an environment variable: run() reads the script's command line.)

suppressPackageStartupMessages(library(metaflow))
big <- as.integer(Sys.getenv("FOREACH_SPLITS", "2000"))
dir <- tempfile("foreach-scale-")
dir.create(dir)
old <- setwd(dir)
on.exit({ setwd(old); unlink(dir, recursive = TRUE) })

scale_run <- function(n) {
  flow <- metaflow(sprintf("ForeachScale%dR", n)) %>%
    step(step = "start", next_step = "work", foreach = "xs",
         r_function = eval(bquote(function(self) {
           self$xs <- lapply(seq_len(.(n)), function(i) list(id = i, v = rnorm(5), tag = paste0("r", i)))
         }))) %>%
    step(step = "work", r_function = function(self) self$y <- self$input$id, next_step = "join") %>%
    step(step = "join", r_function = function(self, inputs) self$n <- length(inputs),
         next_step = "end", join = TRUE) %>%
    step(step = "end")
  invisible(list_flows()) # the session's engine is up before the clock starts
  cpu0 <- engine_cpu()
  t0 <- Sys.time()
  id <- invisible(capture.output(rid <- run(flow, max_workers = 2, max_num_splits = n)))
  total <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  engine_ms <- (engine_cpu() - cpu0) * 1000 / (n + 3) # n splits, start, join, end
  r <- run_client$new(flow$name, rid)
  t1 <- Sys.time()
  s <- r$step("work")
  ids <- s$tasks
  list_secs <- as.numeric(difftime(Sys.time(), t1, units = "secs"))
  t2 <- Sys.time()
  invisible(capture.output(s$task(ids[length(ids)])$stdout))
  logs_secs <- as.numeric(difftime(Sys.time(), t2, units = "secs"))
  # The median split from a sample of 200 (reading 10,000 records one by one
  # is the client's cost, not the run's).
  sample_ids <- ids[unique(round(seq(1, length(ids), length.out = min(200, length(ids)))))]
  secs <- vapply(sample_ids, function(t) {
    tk <- s$task(t)
    as.numeric(difftime(metaflow:::parse_time(tk$finished_at), metaflow:::parse_time(tk$created_at), units = "secs"))
  }, 0)
  joined <- r$step("join")$task(r$step("join")$tasks[1])$artifact("n")
  c(n = n, median_task = stats::median(secs), total = total, engine_ms = engine_ms,
    joined = joined, list_secs = list_secs, logs_secs = logs_secs, engine_mb = engine_peak_mb())
}

# The session's engine: its CPU time (user + system, s) and peak memory (MB).
engine_pid <- function() metaflow:::engine_session$engine$pid
engine_cpu <- function() {
  st <- strsplit(sub("^.*\\) ", "", readLines(sprintf("/proc/%d/stat", engine_pid()))), " ")[[1]]
  (as.numeric(st[12]) + as.numeric(st[13])) / 100 # utime, stime (fields 14, 15) in ticks
}
engine_peak_mb <- function() {
  l <- grep("^VmHWM:", readLines(sprintf("/proc/%d/status", engine_pid())), value = TRUE)
  as.numeric(gsub("[^0-9]", "", l)) / 1024
}
small <- scale_run(200)
large <- scale_run(big)
for (x in list(small, large)) {
  cat(sprintf("%5d splits: median split task %.3f s, run %.1f s, engine %.2f ms CPU per task, join saw %d inputs, tasks listed in %.2f s, a split's logs in %.2f s\n",
              x[["n"]], x[["median_task"]], x[["total"]], x[["engine_ms"]], x[["joined"]], x[["list_secs"]], x[["logs_secs"]]))
}
cat(sprintf("engine peak memory over both runs: %.0f MB (target <= 300 MB)\n", large[["engine_mb"]]))
cat(sprintf("run time ratio %.1fx for %.0fx the splits (target <= %.1fx); split task ratio %.2fx\n",
            large[["total"]] / small[["total"]], big / 200, 52 * big / 10000,
            large[["median_task"]] / small[["median_task"]]))
