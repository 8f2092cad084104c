# The 1 GiB flow against the same work in two bare Rscript processes (issue
# 10, "artifacts at disk speed"): `start` makes a double matrix of N MiB
# (first argument, default 1024) and `end` sums it. The baseline is one
# Rscript that makes the matrix and saveRDS(compress = FALSE)s it, then one
# that readRDS()es it and sums it. Each run's wall clock is measured from
# outside (the flow's includes the client, the engine and both tasks); each
# task's peak RSS (VmHWM) is written by an onexit finalizer, so it covers
# the runtime's artifact write after the step returns. Flow and baseline
# alternate order over the repetitions (second argument, default 3), with a
# `sync` before each so that one's write-back does not land on the other.
# Files live in BIGSUM_BENCH_DIR (default: a folder under tempdir(), on the
# disk), which needs room for two copies. Targets: flow / baseline <= 1.1x,
# each task's peak <= 1.2x the object.
#
# BIGSUM_BENCH_BEFORE=<prefix> also runs the flow, in the same rounds, with
# the engine and R package installed under that prefix (<prefix>/bin,
# <prefix>/lib), e.g. a build of an earlier commit: before/after figures
# from one run.
#
#   Rscript tests/bench/bigsum_bench.R [MiB] [reps]

args <- commandArgs(trailingOnly = TRUE)
mib <- if (length(args) >= 1) as.numeric(args[1]) else 1024
reps <- if (length(args) >= 2) as.integer(args[2]) else 3L
base <- Sys.getenv("BIGSUM_BENCH_DIR", tempdir())
work <- tempfile("bigsum-bench-", tmpdir = base)
dir.create(work)
on.exit(unlink(work, recursive = TRUE))
rscript <- file.path(R.home("bin"), "Rscript")
n <- mib * 1048576 / 8

# Shared by both sides: the matrix is made in place (matrix() would copy),
# and the finalizer records the process's peak RSS when R exits.
common <- c(
  sprintf("bench_n <- %.0f", n),
  sprintf('bench_dir <- "%s"', work),
  "make_matrix <- function() { set.seed(1); x <- runif(bench_n); dim(x) <- c(1024L, bench_n / 1024); x }",
  "hwm_at_exit <- function(tag) {",
  "  e <- new.env()",
  "  assign(paste0('.hwm_', tag), e, envir = globalenv())",
  "  reg.finalizer(e, function(e) {",
  "    s <- readLines('/proc/self/status')",
  "    kib <- as.numeric(gsub('[^0-9]', '', grep('^VmHWM:', s, value = TRUE)))",
  "    cat(kib, file = file.path(bench_dir, paste0(tag, '.hwm')))",
  "  }, onexit = TRUE)",
  "}")
writeLines(c(common,
  "hwm_at_exit('rds_start')",
  "x <- make_matrix()",
  "saveRDS(x, file.path(bench_dir, 'x.rds'), compress = FALSE)"),
  file.path(work, "base_start.R"))
writeLines(c(common,
  "hwm_at_exit('rds_end')",
  "x <- readRDS(file.path(bench_dir, 'x.rds'))",
  "cat(sprintf('SUM %.10g\\n', sum(x)), file = file.path(bench_dir, 'rds.sum'))"),
  file.path(work, "base_end.R"))
writeLines(c(common,
  "library(metaflow)",
  "metaflow('BigSumBenchR') %>%",
  "  step(step = 'start', r_function = function(self) {",
  "    hwm_at_exit('flow_start')",
  "    self$m <- make_matrix()",
  "  }, next_step = 'end') %>%",
  "  step(step = 'end', r_function = function(self) {",
  "    hwm_at_exit('flow_end')",
  "    cat(sprintf('SUM %.10g\\n', sum(self$m)), file = file.path(bench_dir, 'flow.sum'))",
  "  }) %>%",
  "  run()"),
  file.path(work, "flow.R"))

before <- Sys.getenv("BIGSUM_BENCH_BEFORE")

timed <- function(cmd_args, env = character()) {
  system("sync")
  t0 <- Sys.time()
  out <- system2(rscript, cmd_args, stdout = TRUE, stderr = TRUE, env = env)
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  if (!is.null(attr(out, "status"))) stop(paste(out, collapse = "\n"))
  secs
}
hwm <- function(tag) as.numeric(readLines(file.path(work, paste0(tag, ".hwm")), warn = FALSE)) * 1024

run_base <- function() {
  a <- timed(file.path(work, "base_start.R"))
  b <- timed(file.path(work, "base_end.R"))
  unlink(file.path(work, "x.rds"))
  c(secs = a + b, start = hwm("rds_start"), end = hwm("rds_end"))
}
run_flow <- function(prefix = "") {
  old <- setwd(work)
  on.exit(setwd(old))
  env <- if (nzchar(prefix)) {
    c(sprintf("PATH=%s", shQuote(paste0(file.path(prefix, "bin"), ":", Sys.getenv("PATH")))),
      sprintf("R_LIBS=%s", shQuote(file.path(prefix, "lib"))))
  } else character()
  s <- timed(c("flow.R", "run"), env)
  unlink(file.path(work, ".metaflow"), recursive = TRUE)
  c(secs = s, start = hwm("flow_start"), end = hwm("flow_end"))
}

sides <- c("base", "flow", if (nzchar(before)) "before")
rows <- setNames(rep(list(list()), length(sides)), sides)
for (r in seq_len(reps)) {
  order <- if (r %% 2 == 1) sides else rev(sides)
  for (side in order) {
    rows[[side]][[r]] <- switch(side, base = run_base(), flow = run_flow(),
                                before = run_flow(before))
    if (side != "base" && file.exists(file.path(work, "rds.sum")) &&
        !identical(readLines(file.path(work, "rds.sum")), readLines(file.path(work, "flow.sum")))) {
      stop("the flow's sum differs from the baseline's")
    }
  }
}
obj <- 8 * n
col <- function(side, f) vapply(rows[[side]], `[[`, 0, f)
cat(sprintf("object: %.0f MiB double matrix, %d rep(s); files in %s\n", mib, reps, base))
cat(sprintf("baseline (saveRDS + readRDS, 2 x Rscript) s: %s\n",
            paste(sprintf("%.2f", col("base", "secs")), collapse = " ")))
cat(sprintf("flow (client + engine + start + end)     s: %s\n",
            paste(sprintf("%.2f", col("flow", "secs")), collapse = " ")))
ratios <- col("flow", "secs") / col("base", "secs")
cat(sprintf("ratio flow/baseline per rep: %s; median %.2fx (target <= 1.1x)\n",
            paste(sprintf("%.2f", ratios), collapse = " "), median(ratios)))
if (nzchar(before)) {
  cat(sprintf("before (%s)  s: %s\n", before,
              paste(sprintf("%.2f", col("before", "secs")), collapse = " ")))
  rb <- col("before", "secs") / col("base", "secs")
  cat(sprintf("ratio before/baseline per rep: %s; median %.2fx\n",
              paste(sprintf("%.2f", rb), collapse = " "), median(rb)))
}
for (side in sides) for (task in c("start", "end")) {
  h <- median(col(side, task))
  cat(sprintf("PEAK RSS %-6s %-5s %7.1f MiB = %.3fx object (target <= 1.2x)\n",
              side, task, h / 1048576, h / obj))
}
