# Artifact codec benchmark: a double matrix of N MiB (first argument, default
# 1024) written and read with saveRDS(compress = FALSE)/readRDS and with
# mp_write/mp_read (shim/runtime/msgpack.R). Every phase runs in its own
# Rscript child so its peak RSS (VmHWM) is its own; times are wall clock of
# the codec call only, after a warm-up call that triggers R's one-off
# byte-compilation of the codec. The second argument (default 3) repeats the
# four phases, alternating which codec goes first; medians are reported.
#
# Files go to ARTIFACT_BENCH_DIR, by default /dev/shm when it is a writable
# tmpfs with room: on shared VMs disk write-back makes single runs vary 2-3x,
# which would swamp the codecs being compared. Set ARTIFACT_BENCH_DIR=/tmp
# (or any disk folder) to include the disk.
#
#   Rscript tests/bench/artifact_bench.R [MiB] [reps]

script_path <- function() {
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (!length(f)) stop("run this with Rscript")
  normalizePath(f[1])
}

proc_kib <- function(field) {
  s <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep(paste0("^", field, ":"), s, value = TRUE)))
}

make_matrix <- function(mib) {
  n <- mib * 1048576 / 8
  nrow <- 1024
  ncol <- ceiling(n / nrow)
  set.seed(42)
  x <- runif(nrow * ncol)
  dim(x) <- c(nrow, ncol)     # in place; matrix() would copy
  x
}

# One phase in this process; prints "key=value" lines for the parent.
child <- function(phase, path, mib, root) {
  source(file.path(root, "shim", "runtime", "msgpack.R"))
  # Warm-up: R byte-compiles the codec's functions on first use (~0.3 s,
  # once per process); that is start-up cost, not throughput.
  warm <- tempfile()
  mp_write(list(runif(70000), "x"), warm)
  invisible(mp_read(warm))
  unlink(warm)
  r_kib <- proc_kib("VmRSS")          # R itself, before any matrix exists
  writer <- phase %in% c("rds_write", "mp_write")
  x <- if (writer) make_matrix(mib) else NULL
  invisible(gc())
  t0 <- proc.time()[["elapsed"]]
  switch(phase,
    rds_write = saveRDS(x, path, compress = FALSE),
    rds_read = x <- readRDS(path),
    mp_write = mp_write(x, path),
    mp_read = x <- mp_read(path))
  secs <- proc.time()[["elapsed"]] - t0
  hwm_kib <- proc_kib("VmHWM")
  cat(sprintf("secs=%.6f\nhwm_kib=%.0f\nbase_kib=%.0f\nbytes=%.0f\n", secs, hwm_kib,
              r_kib, 8 * length(x)))
  if (!writer) {
    # Checked after VmHWM was taken, so the second copy is not counted.
    cat(sprintf("ok=%s\n", identical(x, make_matrix(mib))))
  }
}

# Free bytes in /dev/shm when it is a writable tmpfs, else 0.
shm_free_bytes <- function() {
  if (!isTRUE(file.access("/dev/shm", 2) == 0)) return(0)
  out <- tryCatch(system2("df", c("-Pk", "/dev/shm"), stdout = TRUE, stderr = FALSE),
                  error = function(e) character(0), warning = function(w) character(0))
  if (length(out) < 2) return(0)
  kib <- suppressWarnings(as.numeric(strsplit(out[2], " +")[[1]][4]))
  if (is.na(kib)) 0 else kib * 1024
}

run_child <- function(phase, path, mib) {
  system("sync")
  out <- system2(file.path(R.home("bin"), "Rscript"),
                 c(shQuote(script_path()), "--child", phase, shQuote(path), mib),
                 stdout = TRUE)
  kv <- strsplit(grep("=", out, value = TRUE), "=", fixed = TRUE)
  res <- setNames(lapply(kv, `[`, 2), vapply(kv, `[`, "", 1))
  if (is.null(res$secs)) stop("phase ", phase, " failed:\n", paste(out, collapse = "\n"))
  if (!is.null(res$ok) && res$ok != "TRUE") stop("phase ", phase, " read back a different matrix")
  list(secs = as.numeric(res$secs), hwm = as.numeric(res$hwm_kib) * 1024,
       base = as.numeric(res$base_kib) * 1024, bytes = as.numeric(res$bytes))
}

main <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  root <- dirname(dirname(dirname(script_path())))
  if (length(args) && args[1] == "--child") {
    return(child(args[2], args[3], as.numeric(args[4]), root))
  }
  mib <- if (length(args) >= 1) as.numeric(args[1]) else 1024
  reps <- if (length(args) >= 2) as.integer(args[2]) else 3L
  base <- Sys.getenv("ARTIFACT_BENCH_DIR")
  if (!nzchar(base)) {
    base <- if (shm_free_bytes() > 2.5 * mib * 1048576) "/dev/shm" else tempdir()
  }
  dir <- tempfile("artifact-bench-", tmpdir = base)
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  rds <- file.path(dir, "x.rds")
  mpk <- file.path(dir, "x.mpk")

  res <- list()
  for (r in seq_len(reps)) {
    order <- c("rds_write", "rds_read", "mp_write", "mp_read")
    if (r %% 2 == 0) order <- order[c(3, 4, 1, 2)]
    for (phase in order) {
      res[[phase]][[r]] <- run_child(phase, if (startsWith(phase, "rds")) rds else mpk, mib)
    }
  }
  med <- function(phase, field) median(vapply(res[[phase]], `[[`, 0, field))
  obj <- med("mp_write", "bytes")
  mibs <- function(b) b / 1048576

  cat(sprintf("object: %.1f MiB double matrix (1024 rows), %d rep(s), medians; files in %s\n",
              mibs(obj), reps, base))
  for (phase in names(res)) {
    cat(sprintf("  %-9s runs: %s s\n", phase,
                paste(sprintf("%.2f", vapply(res[[phase]], `[[`, 0, "secs")), collapse = " ")))
  }
  cat(sprintf("file sizes: rds %.1f MiB, mpk %.1f MiB\n", mibs(file.size(rds)), mibs(file.size(mpk))))
  rds_t <- med("rds_write", "secs") + med("rds_read", "secs")
  mp_t <- med("mp_write", "secs") + med("mp_read", "secs")
  cat(sprintf("saveRDS(compress=FALSE) %.2f s + readRDS %.2f s = %.2f s (%.0f MiB/s)\n",
              med("rds_write", "secs"), med("rds_read", "secs"), rds_t, 2 * mibs(obj) / rds_t))
  cat(sprintf("mp_write %.2f s + mp_read %.2f s = %.2f s (%.0f MiB/s)\n",
              med("mp_write", "secs"), med("mp_read", "secs"), mp_t, 2 * mibs(obj) / mp_t))
  cat(sprintf("THROUGHPUT ratio mp/rds (write+read): %.2fx (target >= 0.80)\n", rds_t / mp_t))
  for (phase in c("mp_write", "mp_read", "rds_write", "rds_read")) {
    hwm <- med(phase, "hwm")
    r0 <- med(phase, "base")
    cat(sprintf("PEAK RSS %-9s %7.1f MiB = %.3fx object; %.3fx without R's own %.0f MiB\n",
                phase, mibs(hwm), hwm / obj, (hwm - r0) / obj, mibs(r0)))
  }
}

main()
