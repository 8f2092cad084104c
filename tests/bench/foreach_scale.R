# A foreach split's cost must not grow with the number of splits (issue 10):
# a foreach over a list of N small records (N = FOREACH_SPLITS, default
# 2000) against one of 200, same machine, same run. Reports the median
# duration of a split task (from its record) and the whole run's time.
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
  t0 <- Sys.time()
  id <- invisible(capture.output(rid <- run(flow, max_workers = 2, max_num_splits = n)))
  total <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  s <- run_client$new(flow$name, rid)$step("work")
  secs <- vapply(s$tasks, function(t) {
    tk <- s$task(t)
    as.numeric(difftime(metaflow:::parse_time(tk$finished_at), metaflow:::parse_time(tk$created_at), units = "secs"))
  }, 0)
  c(n = n, median_task = stats::median(secs), total = total)
}
small <- scale_run(200)
large <- scale_run(big)
cat(sprintf("200 splits:   median split task %.3f s, run %.1f s\n", small[["median_task"]], small[["total"]]))
cat(sprintf("%d splits:  median split task %.3f s, run %.1f s\n", big, large[["median_task"]], large[["total"]]))
cat(sprintf("run time ratio %.1fx for %.0fx the splits (target <= %.1fx); split task ratio %.2fx\n",
            large[["total"]] / small[["total"]], big / 200, 52 * big / 10000,
            large[["median_task"]] / small[["median_task"]]))
