# Helpers for the end-to-end suite: every flow runs as `Rscript flow.R ...`
# in a fresh temporary working directory, exactly as a user would run it.
# No processx: subprocesses go through system2() and a small sh wrapper.

E2E_DIR <- local({
  d <- Sys.getenv("E2E_DIR")
  if (!nzchar(d)) d <- file.path(getwd(), "..")
  normalizePath(d, mustWork = TRUE)
})
FLOWS_DIR <- file.path(E2E_DIR, "flows")

# The timestamp every console line starts with: 2026-11-24 10:00:00.000
TS_RE <- "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}"

# Environment variables that would point a flow at another engine or
# datastore; every subprocess starts without them unless a test sets them.
ENGINE_ENV <- c("METAFLOW_ENGINE_ADDRESS", "METAFLOW_ENGINE_TOKEN",
                "METAFLOW_DATASTORE_SYSROOT_LOCAL", "METAFLOW_ENGINE_BIN",
                "METAFLOW_BATCH_JOB_QUEUE", "METAFLOW_DATASTORE_SYSROOT_S3",
                "METAFLOW_BATCH_CONTAINER_IMAGE", "METAFLOW_BATCH_JOB_ENV",
                "METAFLOW_ECS_S3_ACCESS_IAM_ROLE", "METAFLOW_ECS_FARGATE_EXECUTION_ROLE",
                "METAFLOW_BATCH_ENGINE_BINARY",
                "METAFLOW_DEFAULT_DATASTORE", "METAFLOW_PROFILE", "METAFLOW_HOME")

# No test reads the developer's ~/.metaflowconfig or reaches the EC2
# instance metadata address: an empty METAFLOW_HOME unless a test sets one.
E2E_HOME <- local({
  d <- tempfile("mfhome-")
  dir.create(d)
  d
})
ISOLATION_ENV <- c(METAFLOW_HOME = E2E_HOME, AWS_EC2_METADATA_DISABLED = "true")

e2e_counter <- local({
  n <- 0L
  function() {
    n <<- n + 1L
    n
  }
})

# A fresh, empty working directory (under R's session temp dir).
new_workdir <- function(label = "flow") {
  d <- tempfile(paste0("mfe2e-", gsub("[^A-Za-z0-9]", "", label), "-"))
  dir.create(d, recursive = TRUE)
  normalizePath(d)
}

# Copies tests/e2e/flows/<flow_file> into a fresh working dir as flow.R.
setup_flow <- function(flow_file, workdir = NULL) {
  src <- file.path(FLOWS_DIR, flow_file)
  if (!file.exists(src)) stop("no such flow: ", src)
  if (is.null(workdir)) workdir <- new_workdir(sub("\\.R$", "", flow_file))
  file.copy(src, file.path(workdir, "flow.R"), overwrite = TRUE)
  workdir
}

# The sh command line that runs `cmd args` in dir with a clean environment
# (plus env, a named character vector).
sh_command <- function(dir, cmd, args = character(), env = character()) {
  # Every AWS_* variable too: a developer's profile or endpoint must not
  # reach a test (tests hand the emulator's own).
  parts <- c(paste("unset", paste(ENGINE_ENV, collapse = " ")),
             "for v in $(env | sed -n 's/^\\(AWS_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset \"$v\"; done")
  env <- c(env, ISOLATION_ENV[setdiff(names(ISOLATION_ENV), names(env))])
  if (length(env)) {
    parts <- c(parts, paste0("export ", names(env), "=", shQuote(unname(env))))
  }
  parts <- c(parts, paste("cd", shQuote(dir), "&& exec",
                          paste(shQuote(c(cmd, args)), collapse = " ")))
  paste(parts, collapse = "; ")
}

read_lines_safe <- function(path) {
  if (!file.exists(path)) return(character(0))
  readLines(path, warn = FALSE, encoding = "UTF-8")
}

# Runs `cmd args` in dir and waits (at most timeout seconds). Returns
# list(status, stdout, stderr (line vectors), output (all text), dir,
# elapsed).
run_cmd <- function(dir, cmd, args = character(), env = character(), timeout = 300) {
  n <- e2e_counter()
  out <- tempfile(sprintf("out%03d-", n))
  err <- tempfile(sprintf("err%03d-", n))
  t0 <- Sys.time()
  status <- suppressWarnings(system2("sh", c("-c", shQuote(sh_command(dir, cmd, args, env))),
                                     stdout = out, stderr = err, timeout = timeout))
  elapsed <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  res <- list(status = as.integer(status), stdout = read_lines_safe(out),
              stderr = read_lines_safe(err), dir = dir, elapsed = elapsed,
              command = paste(c(cmd, args), collapse = " "),
              timed_out = elapsed >= timeout - 0.5 && identical(as.integer(status), 124L))
  res$output <- paste(c(res$stdout, res$stderr), collapse = "\n")
  unlink(c(out, err))
  res
}

# Runs `Rscript flow.R <args>` in a fresh copy of the flow (or in workdir,
# which must already hold flow.R).
run_flow <- function(flow_file = NULL, args = "run", env = character(), workdir = NULL,
                     timeout = 300) {
  if (is.null(workdir)) workdir <- setup_flow(flow_file)
  else if (!is.null(flow_file)) setup_flow(flow_file, workdir)
  run_cmd(workdir, "Rscript", c("flow.R", args), env = env, timeout = timeout)
}

# Writes R code to dir/client.R and runs it there with Rscript, as a user
# runs a script that reads runs through the client API.
run_client_script <- function(dir, lines, env = character(), timeout = 300) {
  writeLines(lines, file.path(dir, "client.R"))
  run_cmd(dir, "Rscript", "client.R", env = env, timeout = timeout)
}

# ---- background processes --------------------------------------------------

# Starts `cmd args` in dir in the background. The process is exec'd by a sh
# that first writes its pid, so the pid is the command's own.
start_bg <- function(dir, cmd, args = character(), env = character()) {
  base <- tempfile("bg")
  dir.create(base)
  files <- list(pid = file.path(base, "pid"), out = file.path(base, "stdout"),
                err = file.path(base, "stderr"), rc = file.path(base, "rc"))
  inner <- paste0("echo $$ > ", shQuote(files$pid), "; ", sh_command(dir, cmd, args, env))
  wrapper <- file.path(base, "wrapper.sh")
  writeLines(c(
    paste("sh -c", shQuote(inner), ">", shQuote(files$out), "2>", shQuote(files$err)),
    paste("echo $? >", shQuote(files$rc))
  ), wrapper)
  system2("sh", shQuote(wrapper), wait = FALSE, stdout = FALSE, stderr = FALSE)
  deadline <- Sys.time() + 20
  while (!(file.exists(files$pid) && length(read_lines_safe(files$pid)))) {
    if (Sys.time() > deadline) stop("background process did not start: ", cmd)
    Sys.sleep(0.05)
  }
  files$pid_value <- as.integer(read_lines_safe(files$pid)[1])
  files$dir <- dir
  files
}

bg_stdout <- function(bg) read_lines_safe(bg$out)
bg_stderr <- function(bg) read_lines_safe(bg$err)

# Exit status of a background process, or NA if it is still running.
bg_status <- function(bg) {
  rc <- read_lines_safe(bg$rc)
  if (length(rc) && nzchar(rc[1])) as.integer(rc[1]) else NA_integer_
}

# Waits until it exits (status) or timeout (NA).
bg_wait <- function(bg, timeout = 60) {
  deadline <- Sys.time() + timeout
  repeat {
    s <- bg_status(bg)
    if (!is.na(s) || Sys.time() > deadline) return(s)
    Sys.sleep(0.1)
  }
}

# Waits until cond() is TRUE; returns whether it became TRUE in time.
wait_until <- function(cond, timeout = 60, interval = 0.1) {
  deadline <- Sys.time() + timeout
  repeat {
    if (isTRUE(cond())) return(TRUE)
    if (Sys.time() > deadline) return(FALSE)
    Sys.sleep(interval)
  }
}

pid_alive <- function(pid) {
  # /proc/<pid> exists for zombies too; look at the state.
  st <- suppressWarnings(tryCatch(readLines(sprintf("/proc/%d/stat", pid), warn = FALSE),
                                  error = function(e) character(0)))
  if (!length(st)) return(FALSE)
  state <- sub("^.*\\) ([A-Za-z]).*$", "\\1", st[1])
  state != "Z"
}

# Live processes whose command line contains marker: data.frame(pid, args).
processes_matching <- function(marker) {
  pids <- as.integer(list.files("/proc", pattern = "^[0-9]+$"))
  pids <- setdiff(pids, Sys.getpid())
  rows <- lapply(pids, function(p) {
    f <- sprintf("/proc/%d/cmdline", p)
    raw <- tryCatch(readBin(f, "raw", 65536), error = function(e) raw(0),
                    warning = function(w) raw(0))
    if (!length(raw)) return(NULL)
    raw[raw == as.raw(0)] <- as.raw(32)
    args <- rawToChar(raw)
    if (grepl(marker, args, fixed = TRUE) && pid_alive(p)) data.frame(pid = p, args = args)
    else NULL
  })
  rows <- Filter(Negate(is.null), rows)
  if (!length(rows)) return(data.frame(pid = integer(0), args = character(0)))
  do.call(rbind, rows)
}

# ---- the datastore -----------------------------------------------------------

mf_path <- function(dir, ...) file.path(dir, ".metaflow", ...)

read_json_file <- function(path) jsonlite::fromJSON(path, simplifyVector = FALSE)

run_meta <- function(dir, flow, run_id) read_json_file(mf_path(dir, flow, run_id, "_run.json"))

task_ids <- function(dir, flow, run_id, step) {
  d <- mf_path(dir, flow, run_id, step)
  if (!dir.exists(d)) return(character(0))
  ids <- list.files(d, pattern = "^[0-9]+$")
  ids <- ids[file.exists(file.path(d, ids, "_task.json"))]
  as.character(sort(as.integer(ids)))
}

task_meta <- function(dir, flow, run_id, step, task_id) {
  read_json_file(mf_path(dir, flow, run_id, step, task_id, "_task.json"))
}

# A completed task's record carries its artifact index.
task_artifacts <- function(dir, flow, run_id, step, task_id) {
  task_meta(dir, flow, run_id, step, task_id)$artifacts
}

# ---- expectations ------------------------------------------------------------

describe_result <- function(res) {
  sprintf("`%s` in %s\nexit status: %s\n--- stdout ---\n%s\n--- stderr ---\n%s",
          res$command, res$dir, res$status,
          paste(utils::tail(res$stdout, 60), collapse = "\n"),
          paste(utils::tail(res$stderr, 60), collapse = "\n"))
}

expect_exit <- function(res, status = 0L) {
  testthat::expect(identical(res$status, as.integer(status)),
                   sprintf("expected exit status %d.\n%s", status, describe_result(res)))
  invisible(res)
}

expect_failure_exit <- function(res) {
  testthat::expect(!identical(res$status, 0L) && !isTRUE(res$timed_out),
                   sprintf("expected a non-zero exit status (and no timeout).\n%s",
                           describe_result(res)))
  invisible(res)
}

# Some line of `lines` matches the (perl) regex; returns the matching lines.
expect_line <- function(lines, pattern, res = NULL, fixed = FALSE) {
  hit <- if (fixed) grepl(pattern, lines, fixed = TRUE) else grepl(pattern, lines, perl = TRUE)
  ctx <- if (is.null(res)) paste(utils::tail(lines, 60), collapse = "\n") else describe_result(res)
  testthat::expect(any(hit), sprintf("no line matches /%s/.\n%s", pattern, ctx))
  invisible(lines[hit])
}

expect_no_line <- function(lines, pattern, res = NULL, fixed = FALSE) {
  hit <- if (fixed) grepl(pattern, lines, fixed = TRUE) else grepl(pattern, lines, perl = TRUE)
  ctx <- if (is.null(res)) paste(lines[hit], collapse = "\n") else describe_result(res)
  testthat::expect(!any(hit), sprintf("unexpected line matching /%s/.\n%s", pattern, ctx))
  invisible(res)
}

expect_output_match <- function(res, pattern, fixed = FALSE) {
  expect_line(c(res$stdout, res$stderr), pattern, res, fixed = fixed)
}

# stderr without R's own notes that library(metaflow) prints when it
# attaches ("Attaching package: 'metaflow'" and "The following object is
# masked from 'package:stats': step"), blank lines and "Execution halted".
stderr_proper <- function(lines) {
  lines <- lines[nzchar(trimws(lines)) & lines != "Execution halted"]
  drop <- grepl("^Attaching package: ", lines) |
    grepl("^The following objects? (is|are) masked ", lines)
  # The masked names follow, indented, right after a "masked" line.
  in_mask <- FALSE
  for (i in seq_along(lines)) {
    if (grepl("^The following objects? (is|are) masked ", lines[i])) {
      in_mask <- TRUE
    } else if (in_mask && grepl("^    ", lines[i])) {
      drop[i] <- TRUE
    } else {
      in_mask <- FALSE
    }
  }
  lines[!drop]
}

# Rscript's report of an uncaught error is "Error: <message>" then
# "Execution halted": the message must be exactly one line.
expect_one_line_error <- function(res, pattern, fixed = FALSE) {
  expect_failure_exit(res)
  lines <- stderr_proper(res$stderr)
  testthat::expect(length(lines) == 1 && startsWith(lines[1], "Error: "),
                   sprintf("expected exactly one line `Error: ...` on stderr, got %d line(s).\n%s",
                           length(lines), describe_result(res)))
  if (length(lines)) {
    ok <- if (fixed) grepl(pattern, lines[1], fixed = TRUE) else grepl(pattern, lines[1], perl = TRUE)
    testthat::expect(ok, sprintf("the error does not match /%s/:\n%s", pattern, lines[1]))
  }
  invisible(lines)
}

expect_no_datastore <- function(res) {
  d <- mf_path(res$dir)
  testthat::expect(!file.exists(d),
                   sprintf("expected no .metaflow folder, but found: %s\n%s",
                           paste(list.files(d, recursive = TRUE, include.dirs = TRUE),
                                 collapse = ", "), describe_result(res)))
  invisible(res)
}

# The final error line of a failed run (Rscript's "Error: ...").
error_line <- function(res) {
  l <- grep("^Error", res$stderr, value = TRUE)
  if (length(l)) l[length(l)] else ""
}

# Lines of the engine/task console for one task:
# "<ts> [RUN/STEP/TASK (pid N)] text".
task_line_re <- function(run_id, step, text, task_id = "[0-9]+") {
  sprintf("^%s \\[%s/%s/%s \\(pid [1-9][0-9]*\\)\\] %s$", TS_RE, run_id, step, task_id, text)
}

# Parses "<ts> [RUN/STEP/TASK (pid N)] text" lines into a data.frame.
parse_task_lines <- function(lines) {
  re <- sprintf("^%s \\[([0-9]+)/([A-Za-z0-9_]+)/([0-9]+) \\(pid ([0-9]+)\\)\\] (.*)$", TS_RE)
  hit <- grepl(re, lines, perl = TRUE)
  l <- lines[hit]
  data.frame(
    line_no = which(hit),
    run = sub(re, "\\1", l, perl = TRUE), step = sub(re, "\\2", l, perl = TRUE),
    task = sub(re, "\\3", l, perl = TRUE), pid = as.integer(sub(re, "\\4", l, perl = TRUE)),
    text = sub(re, "\\5", l, perl = TRUE), stringsAsFactors = FALSE
  )
}

# A free TCP port on 127.0.0.1.
free_port <- function() {
  for (i in 1:100) {
    p <- sample(20000:60000, 1)
    ok <- tryCatch({
      s <- serverSocket(p)
      close(s)
      TRUE
    }, error = function(e) FALSE, warning = function(w) FALSE)
    if (ok) return(p)
  }
  stop("no free port found")
}

random_token <- function(n = 24) {
  paste(sample(c(letters, LETTERS, 0:9), n, replace = TRUE), collapse = "")
}
