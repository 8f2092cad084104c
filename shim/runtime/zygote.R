# Warm task starts: a per-run parent R process (the "zygote") that loads the
# task runtime (task.R), the run's code bundle and its packages once, then
# forks one child per task with the metaflow package's C helper.
#   Rscript zygote.R <_code.rds>     fd 3: the engine's control socket (SOCK_SEQPACKET)
# One message per record:
#   engine -> zygote  "T <id> -" with the task's stdout, stderr and spec (a memory
#                     file) attached
#                     "K <id> <signal>"    signal the task's process group
#   zygote -> engine  "R" ready | "F <why>" cannot start tasks warm (the engine
#                     then starts a fresh Rscript per task)
#                     "S <id> <pid>" started | "X <id> <why>" not started
#                     "E <id> <exit code, -1 if signalled> <signal>" ended
# The zygote runs no task code itself: every child starts from the same state.
local({
  sock <- 3L
  abi <- 1L
  send_raw <- NULL
  refuse <- function(why) {
    why <- gsub("[\r\n]+", " ", why)
    if (!is.null(send_raw)) send_raw(paste("F", why)) else cat("F", why, "\n", file = stderr())
    base::quit(save = "no", status = 3L)
  }

  pkg <- find.package("metaflow", quiet = TRUE)
  if (!length(pkg)) {
    refuse(sprintf("the metaflow R package is not installed for %s", file.path(R.home("bin"), "Rscript")))
  }
  dll <- tryCatch(library.dynam("metaflow", "metaflow", lib.loc = dirname(pkg)),
                  error = function(e) refuse(paste("the metaflow package has no compiled helper:",
                                                   conditionMessage(e))))
  fns <- tryCatch(lapply(stats::setNames(nm = c("abi", "init", "wait", "send", "close", "fork",
                                                 "reap", "kill")),
                         function(n) getNativeSymbolInfo(paste0("mf_zygote_", n), dll)),
                  error = function(e) refuse(paste("the metaflow package's helper is too old:",
                                                   "reinstall the R package (make install)")))
  if (!identical(.Call(fns$abi), abi)) {
    refuse("the metaflow package's helper does not match this engine: reinstall the R package (make install)")
  }
  send_raw <- function(msg) invisible(.Call(fns$send, sock, msg))

  file_arg <- grep("^--file=", commandArgs(), value = TRUE)
  here <- dirname(sub("^--file=", "", file_arg[1L]))
  mf <- tryCatch(source(file.path(here, "task.R"), local = FALSE)$value,
                 error = function(e) refuse(paste("cannot load the task runtime:", conditionMessage(e))))
  code_path <- commandArgs(trailingOnly = TRUE)[1L]
  code <- tryCatch(mf$load_code(code_path, function(msg) stop(msg, call. = FALSE)),
                   error = function(e) refuse(conditionMessage(e)))

  # Packages the steps (or helpers among the globals) load themselves, with
  # library(p), require(p), requireNamespace("p") or p::f, are loaded here
  # too, so that a task only attaches them. One that fails to load is left
  # for the task to report.
  pkgs_used <- function(x) {
    acc <- character()
    walk <- function(x) {
      if (is.function(x)) return(walk(body(x)))
      if (!is.call(x)) return(NULL)
      f <- x[[1L]]
      if (is.symbol(f)) {
        fn <- as.character(f)
        if (fn %in% c("::", ":::") && length(x) == 3L) acc <<- c(acc, as.character(x[[2L]]))
        if (fn %in% c("library", "require", "requireNamespace", "loadNamespace") && length(x) >= 2L &&
            is.null(x$character.only) && (is.symbol(x[[2L]]) || is.character(x[[2L]]))) {
          acc <<- c(acc, as.character(x[[2L]]))
        }
      }
      for (i in seq_along(x)) {
        if (!identical(x[[i]], quote(expr = ))) walk(x[[i]])
      }
      NULL
    }
    walk(x)
    unique(acc)
  }
  fns_of <- c(code$functions, Filter(is.function, code$globals))
  for (p in setdiff(unlist(lapply(fns_of, pkgs_used)), loadedNamespaces())) {
    try(suppressPackageStartupMessages(loadNamespace(p)), silent = TRUE)
  }

  # Fork safety: forking a process with threads can leave locks held in the
  # child, so a flow whose packages started threads runs cold, as do flows
  # that load packages known to start them later or to hold state a fork
  # breaks (plus METAFLOW_WARM_START_UNSAFE, comma-separated).
  unsafe <- c("rJava", "reticulate", "arrow", "torch", "tensorflow", "keras", "h2o",
              "RcppParallel", "V8", "later", "httpuv")
  extra <- trimws(strsplit(Sys.getenv("METAFLOW_WARM_START_UNSAFE"), ",", fixed = TRUE)[[1L]])
  bad <- intersect(loadedNamespaces(), c(unsafe, extra[nzchar(extra)]))
  if (length(bad)) {
    refuse(sprintf("package %s is not fork-safe", paste(bad, collapse = ", ")))
  }
  # cli's one thread only sleeps and sets a flag (its progress bars then
  # update only when a task ends); it holds no lock a child could inherit.
  benign <- sum(c("cli") %in% loadedNamespaces())
  threads <- length(list.files("/proc/self/task")) - 1L
  if (threads > benign) {
    refuse(sprintf("the flow's packages started %d thread(s): forking a process with threads is unsafe", threads))
  }
  .Call(fns$init)
  invisible(gc())

  # Each child gets its own tempdir() from R itself: the zygote removes its
  # own (empty) one, so that tempdir(check = TRUE) in a child makes a fresh
  # one, which R removes when the child quits, as for a fresh Rscript.
  td <- tempdir()
  if (length(list.files(td, all.files = TRUE, no.. = TRUE))) {
    refuse(sprintf("loading the flow's packages left files in tempdir() (%s), which tasks would share", td))
  }
  unlink(td, recursive = TRUE, force = TRUE)

  live <- list() # task ids by pid

  child <- function(spec) {
    tempdir(check = TRUE)
    # A fresh seed from the time and this pid, as a fresh Rscript gets.
    if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) {
      rm(".Random.seed", envir = globalenv())
    }
    status <- tryCatch({
      mf$run_task(spec, code)
      0L
    }, error = function(e) {
      cat("Error: ", conditionMessage(e), "\n", sep = "", file = stderr())
      1L
    })
    base::quit(save = "no", status = status)
  }

  send_raw("R")
  repeat {
    ev <- .Call(fns$wait, sock, -1L)
    repeat { # at most 256 children a call
      ended <- .Call(fns$reap)
      for (i in seq_len(nrow(ended))) {
        key <- as.character(ended[i, 1L])
        id <- live[[key]]
        if (is.null(id)) next
        live[[key]] <- NULL
        send_raw(sprintf("E %s %d %d", id, ended[i, 2L], ended[i, 3L]))
      }
      if (nrow(ended) < 256L) break
    }
    if (ev[[1L]] == "eof") break
    if (ev[[1L]] != "msg") next
    msg <- ev[[2L]]
    fds <- ev[[3L]]
    parts <- regmatches(msg, regexec("^([TK]) ([^ ]+) (.*)$", msg))[[1L]]
    if (length(parts) != 4L) {
      .Call(fns$close, fds)
      next
    }
    id <- parts[3L]
    if (parts[2L] == "K") {
      .Call(fns$close, fds)
      for (key in names(live)) {
        if (identical(live[[key]], id)) .Call(fns$kill, as.integer(key), as.integer(parts[4L]))
      }
      next
    }
    if (length(fds) != 3L) {
      .Call(fns$close, fds)
      send_raw(sprintf("X %s the request carried %d file descriptors, not 3", id, length(fds)))
      next
    }
    # The spec comes as a memory file (its bytes are read here: the child
    # keeps no descriptor but its stdout and stderr).
    spec <- tryCatch({
      p <- sprintf("/proc/self/fd/%d", fds[3L])
      readBin(p, "raw", file.size(p))
    }, error = function(e) e)
    .Call(fns$close, fds[3L])
    if (inherits(spec, "error")) {
      .Call(fns$close, fds[1:2])
      send_raw(sprintf("X %s cannot read the task spec: %s", id, conditionMessage(spec)))
      next
    }
    pid <- tryCatch(.Call(fns$fork, fds[1L], fds[2L]), error = function(e) e)
    if (inherits(pid, "error")) {
      .Call(fns$close, fds[1:2])
      send_raw(sprintf("X %s %s", id, conditionMessage(pid)))
      next
    }
    if (pid == 0L) child(spec) # never returns
    live[[as.character(pid)]] <- id
    send_raw(sprintf("S %s %d", id, pid))
  }
  # The engine is gone or done with this run: children die with us (their
  # parent-death signal) or now.
  for (key in names(live)) .Call(fns$kill, as.integer(key), 9L)
  base::quit(save = "no", status = 0L)
})
