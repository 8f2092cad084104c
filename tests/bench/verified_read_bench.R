# Verified reads (issue 9, item 1): what checking a blob file against the
# stamp it was verified under costs a task and the client, against today's
# read of the same file by path (mp_read), for a small artifact (1000
# doubles) and a large one (VERIFY_BENCH_MIB, default 1024 MiB), same run.
#
# A real flow stores both artifacts; GetTask gives their files and stamps.
# Each reader runs in its own Rscript child, where before and after reads
# alternate (pairs share the machine's drifting load); the medians of
# each and of the pairs' ratios are reported, in wall-clock and in CPU time
# of the reading process:
#   task_before   mp_read(path) in the runtime's codec, JIT off (task.R's read
#                 of self$x until now)
#   task_after    mp_read_verified(path, stamp, what): the runtime's read now
#   client_before task_client$artifact() as it was (old_artifact below: the
#                 path GetTask gave, read with mp_read; the GetTask call made
#                 when a task client is created is excluded from both)
#   client_after  task_client$artifact(name): the stamp check and the read
# A small read is timed in batches of VERIFY_BENCH_SMALL_BATCH reads. The
# engine's side (one stat per input blob when it writes a spec) is a Go
# benchmark: go test -run '^$' -bench LocalFile ./engine/datastore/.
#
#   VERIFY_BENCH_MIB=1024 VERIFY_BENCH_PAIRS=5 Rscript tests/bench/verified_read_bench.R
# (environment variables: run() reads the script's command line.)

script_path <- function() {
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (!length(f)) stop("run this with Rscript")
  normalizePath(f[1])
}
SCRIPT <- script_path()  # before main() changes the working directory

# One reader (task or client) in this process: before and after reads of one
# file alternate (the machine's load drifts; a pair shares it), each timed
# over a batch of reads; prints medians for the parent.
child <- function(who, pathspec, name, path, stamp, pairs, batch, root) {
  if (who == "task") {
    rt <- new.env()
    sys.source(file.path(root, "shim", "runtime", "msgpack.R"), envir = rt)
    compiler::enableJIT(0)  # as task.R runs its own code
    before <- function() rt$mp_read(path)
    after <- function() rt$mp_read_verified(path, stamp, paste0("artifact '", name, "'"))
  } else {
    suppressPackageStartupMessages(library(metaflow))
    t <- task_client$new(pathspec)
    before <- function() old_artifact(t, name)
    after <- function() t$artifact(name)
  }
  # Warm-up: the session engine, R's first calls, the page cache.
  invisible(before())
  invisible(after())
  # Wall clock and this process's CPU time (user + system: the work done,
  # less sensitive than the wall clock to other processes on a busy machine).
  time <- function(read) {
    invisible(gc())
    t0 <- proc.time()
    for (j in seq_len(batch)) v <- read()
    d <- proc.time() - t0
    c(wall = d[["elapsed"]], cpu = d[["user.self"]] + d[["sys.self"]]) / batch
  }
  b <- a <- matrix(0, pairs, 2, dimnames = list(NULL, c("wall", "cpu")))
  for (i in seq_len(pairs)) {
    if (i %% 2) {
      b[i, ] <- time(before)
      a[i, ] <- time(after)
    } else {
      a[i, ] <- time(after)
      b[i, ] <- time(before)
    }
  }
  for (k in c("wall", "cpu")) {
    cat(sprintf("%s_before=%.9f\n%s_after=%.9f\n%s_ratio=%.4f\n", k, stats::median(b[, k]),
                k, stats::median(a[, k]), k, stats::median(a[, k] / b[, k])))
  }
}

# task_client$artifact() as it was before reads were verified (a local
# engine: the path GetTask gave, read with the codec).
old_artifact <- function(t, name) {
  ns <- asNamespace("metaflow")
  ns$check_string(name, "artifact name")
  a <- Filter(function(x) x$name == name, t$get_info()$artifacts)
  if (!length(a)) stop("no artifact ", name)
  run <- t$step$run
  if (ns$engine_is_remote()) stop("the benchmark needs a local engine")
  path <- a[[1]]$path
  ns$mp_read(path)
}

run_child <- function(who, target, pairs, batch) {
  out <- system2(file.path(R.home("bin"), "Rscript"),
                 c(shQuote(SCRIPT), "--child", who, target$pathspec, target$name,
                   shQuote(target$path), format(target$stamp$size, scientific = FALSE),
                   sprintf("%.9f", target$stamp$mtime), sprintf("%.9f", target$stamp$ctime),
                   pairs, batch),
                 stdout = TRUE)
  kv <- strsplit(grep("=", out, value = TRUE), "=", fixed = TRUE)
  res <- setNames(lapply(kv, function(x) as.numeric(x[2])), vapply(kv, `[`, "", 1))
  if (is.null(res$cpu_ratio)) stop(who, " failed:\n", paste(out, collapse = "\n"))
  res
}

main <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  root <- dirname(dirname(dirname(SCRIPT)))
  if (length(args) && args[1] == "--child") {
    stamp <- list(size = as.numeric(args[6]), mtime = as.numeric(args[7]), ctime = as.numeric(args[8]))
    return(child(args[2], args[3], args[4], args[5], stamp, as.integer(args[9]),
                 as.integer(args[10]), root))
  }
  pairs <- as.integer(Sys.getenv("VERIFY_BENCH_PAIRS", "5"))
  mib <- as.numeric(Sys.getenv("VERIFY_BENCH_MIB", "1024"))
  small_batch <- as.integer(Sys.getenv("VERIFY_BENCH_SMALL_BATCH", "1000"))
  suppressPackageStartupMessages(library(metaflow))
  dir <- tempfile("verify-bench-")
  dir.create(dir)
  old <- setwd(dir)
  on.exit({ setwd(old); unlink(dir, recursive = TRUE) })

  n <- mib * 1048576 / 8
  start <- function(self) {
    self$small <- runif(1000)
    big <- rep_len(runif(1048576), n)
    dim(big) <- c(1024L, length(big) / 1024L)
    self$big <- big
  }
  flow <- metaflow("VerifyBenchFlow") %>%
    step(step = "start", r_function = start, next_step = "end") %>%
    step(step = "end")
  cat(sprintf("storing a %g MiB artifact and a small one...\n", mib))
  invisible(capture.output(run(flow)))
  t <- task_client$new("VerifyBenchFlow/1/start/1")
  targets <- lapply(t$get_info()$artifacts, function(a) {
    list(pathspec = "VerifyBenchFlow/1/start/1", name = a$name, path = a$path,
         stamp = metaflow:::client_stamp(a$stamp))
  })
  names(targets) <- vapply(targets, `[[`, "", "name")
  cat(sprintf(paste0("pairs of before/after reads, medians; small: 1000 doubles (%d bytes), %d pairs of ",
                     "batches of %d reads; big: %g MiB (%.0f bytes), %d pairs\n"),
              targets$small$stamp$size, 4L * pairs, small_batch, mib, targets$big$stamp$size, pairs))
  for (what in c("small", "big")) {
    for (who in c("task", "client")) {
      r <- if (what == "small") run_child(who, targets[[what]], 4L * pairs, small_batch)
           else run_child(who, targets[[what]], pairs, 1L)
      f <- if (what == "small") 1e6 else 1
      u <- if (what == "small") "us" else "s"
      for (k in c("cpu", "wall")) {
        cat(sprintf("%-5s %-6s read, %-4s time: before %9.3f %s, verified %9.3f %s: %.3fx (median of pair ratios; target <= 1.05)\n",
                    what, who, k, r[[paste0(k, "_before")]] * f, u, r[[paste0(k, "_after")]] * f, u,
                    r[[paste0(k, "_ratio")]]))
      }
    }
  }
}

main()
