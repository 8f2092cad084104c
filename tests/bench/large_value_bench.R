# Large raw values (issue 9): a raw vector of N GiB (first argument, default
# 5) written with mp_write and read back with mp_read, each phase in its own
# Rscript child so that its peak RSS (VmHWM) is its own. Targets: peak at
# most 1.3x the value, and an identical() round trip (checked in the read
# phase against the same generator). saveRDS/readRDS of the same vector are
# the baseline. Files go to LARGE_BENCH_DIR (default tempdir()), which needs
# room for the value twice.
#
#   Rscript tests/bench/large_value_bench.R [GiB]

gib <- as.numeric(commandArgs(TRUE)[1])
if (is.na(gib)) gib <- 5
me <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1]))
codec <- normalizePath(file.path(dirname(me), "..", "..", "shim", "runtime", "msgpack.R"))
dir <- Sys.getenv("LARGE_BENCH_DIR", tempdir())
files <- c(mpk = file.path(dir, "large.mpk"), rds = file.path(dir, "large.rds"))
on.exit(unlink(files))

phase <- function(body) {
  script <- tempfile(fileext = ".R")
  writeLines(c(
    sprintf('source("%s")', codec),
    sprintf("n <- %.0f", gib * 2^30),
    "make <- function() rep_len(as.raw(0:250), n)",
    sprintf('mpk <- "%s"; rds <- "%s"', files[["mpk"]], files[["rds"]]),
    "t0 <- Sys.time()", body, "secs <- as.numeric(difftime(Sys.time(), t0, units = 'secs'))",
    # The peak is taken before any check, which needs a second copy.
    'hwm <- as.numeric(gsub("[^0-9]", "", grep("^VmHWM:", readLines("/proc/self/status"), value = TRUE)))',
    "if (exists('check')) { rm(t0); ok <- identical(x, make()) }",
    'cat(sprintf("RESULT %.2f %.0f %s\\n", secs, hwm / 1024, if (exists("ok")) ok else NA))'), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE)
  r <- strsplit(sub("^RESULT ", "", grep("^RESULT", out, value = TRUE)), " ")[[1]]
  list(secs = as.numeric(r[1]), peak_mib = as.numeric(r[2]), ok = r[3])
}

value_mib <- gib * 1024
rows <- list(
  `saveRDS(compress = FALSE)` = phase("x <- make(); t0 <- Sys.time(); saveRDS(x, rds, compress = FALSE)"),
  `readRDS` = phase("x <- readRDS(rds); check <- TRUE"),
  `mp_write` = phase("x <- make(); t0 <- Sys.time(); mp_write(x, mpk)"),
  `mp_read` = phase("x <- mp_read(mpk); check <- TRUE"))
cat(sprintf("raw vector of %.1f GiB (%.0f MiB)\n", gib, value_mib))
for (nm in names(rows)) {
  r <- rows[[nm]]
  cat(sprintf("%-26s %7.2f s  peak %7.0f MiB = %.2fx the value%s\n", nm, r$secs, r$peak_mib,
              r$peak_mib / value_mib, if (!is.na(r$ok) && r$ok != "NA") paste("  identical:", r$ok) else ""))
}
