# Connecting to the Go engine: either one named by METAFLOW_ENGINE_ADDRESS
# or the session's embedded engine, started on first use and kept until R
# exits or the package is unloaded (the engine also exits if R dies).

# A connection is what grpc_*() needs to make a call: the base URL, the unix
# socket (or NULL for TCP), the bearer token and a label for error messages.
engine_connection <- function(address, token = "") {
  if (grepl("^unix:", address)) {
    path <- sub("^unix:(//)?", "", address)
    if (!nzchar(path)) stop("invalid METAFLOW_ENGINE_ADDRESS '", address, "'", call. = FALSE)
    return(list(base_url = "http://localhost", socket = path, token = "",
                label = address))
  }
  hostport <- sub("^(http|tcp)://", "", address)
  if (!grepl("^(\\[[0-9a-fA-F:]+\\]|[^:/]+):[0-9]+$", hostport)) {
    stop("invalid METAFLOW_ENGINE_ADDRESS '", address,
         "': expected unix:///path/to/socket or host:port", call. = FALSE)
  }
  list(base_url = paste0("http://", hostport), socket = NULL, token = token,
       label = hostport)
}

engine_binary <- function() {
  bin <- Sys.getenv("METAFLOW_ENGINE_BIN")
  if (nzchar(bin)) {
    if (!file.exists(bin)) {
      stop("METAFLOW_ENGINE_BIN is '", bin, "', which does not exist", call. = FALSE)
    }
    return(bin)
  }
  bin <- unname(Sys.which("metaflow-engine"))
  if (!nzchar(bin)) {
    stop("the metaflow-engine binary is not on PATH: install it with `make install` ",
         "in the metaflow repository (or set METAFLOW_ENGINE_BIN)", call. = FALSE)
  }
  bin
}

# Starts `metaflow-engine serve` on a unix socket in a private directory.
# The engine also watches our pid and exits if this R process dies.
engine_start <- function(timeout = 10, env = datastore_env()) {
  bin <- engine_binary()
  dir <- tempfile("mfengine")
  # A unix socket path must fit in 108 bytes; long TMPDIRs would break it.
  if (nchar(dir, type = "bytes") > 90) dir <- tempfile("mfengine", tmpdir = "/tmp")
  if (!dir.create(dir, showWarnings = FALSE, mode = "0700")) {
    stop("cannot create the engine directory ", dir, call. = FALSE)
  }
  Sys.chmod(dir, "0700", use_umask = FALSE)
  sock <- file.path(dir, "engine.sock")
  log <- file.path(dir, "engine.log")
  pidfile <- file.path(dir, "engine.pid")
  # Through sh to learn the engine's pid (exec keeps it), so that an engine
  # that exits at once is reported at once rather than after the timeout.
  cmd <- sprintf("echo $$ > %s; exec %s serve --socket %s --parent-pid %d",
                 shQuote(pidfile), shQuote(bin), shQuote(sock), Sys.getpid())
  # The engine opens the datastore its environment selects (set_metadata(),
  # --datastore): set it for the child only.
  old <- Sys.getenv(names(env), unset = NA, names = TRUE)
  do.call(Sys.setenv, as.list(env))
  on.exit(for (k in names(old)) {
    if (is.na(old[[k]])) Sys.unsetenv(k) else do.call(Sys.setenv, stats::setNames(list(old[[k]]), k))
  }, add = TRUE)
  system2("/bin/sh", c("-c", shQuote(cmd)), stdout = log, stderr = log, wait = FALSE)
  conn <- engine_connection(paste0("unix://", sock))
  deadline <- Sys.time() + timeout
  failed <- function(why) {
    txt <- if (file.exists(log)) paste(readLines(log, warn = FALSE), collapse = "\n") else ""
    unlink(dir, recursive = TRUE)
    stop(sprintf("the metaflow engine (%s) %s%s", bin, why,
                 if (nzchar(txt)) paste0("; its log:\n", txt) else ""), call. = FALSE)
  }
  # The socket file appears at bind(), just before listen(): wait until a
  # request gets an answer, whatever it is.
  while (!file.exists(sock) || !engine_answers(conn)) {
    pid <- if (file.exists(pidfile)) suppressWarnings(as.integer(readLines(pidfile, warn = FALSE)[1])) else NA
    if (!is.na(pid) && !tools::pskill(pid, 0L)) failed("exited at start")
    if (Sys.time() > deadline) failed(sprintf("did not start within %d s", timeout))
    Sys.sleep(0.01)
  }
  pid <- suppressWarnings(as.integer(readLines(pidfile, warn = FALSE)[1]))
  list(conn = conn, dir = dir, log = log, pid = pid)
}

engine_answers <- function(conn) {
  h <- grpc_handle(conn, grpc_frame(raw(0)), timeout = 2)
  ok <- tryCatch({
    curl::curl_fetch_memory(paste0(conn$base_url, "/"), handle = h)
    TRUE
  }, error = function(e) FALSE)
  ok
}

engine_stop <- function(engine, wait = 5) {
  tryCatch(grpc_unary(engine$conn, "Shutdown", list(), timeout = 5),
           error = function(e) NULL)
  # The engine stops its runs and exits; wait for it (then insist), so that
  # a restart never leaves two engines behind.
  deadline <- Sys.time() + wait
  while (engine_alive(engine) && Sys.time() < deadline) Sys.sleep(0.01)
  if (engine_alive(engine)) tools::pskill(engine$pid, tools::SIGTERM)
  unlink(engine$dir, recursive = TRUE)
  invisible(NULL)
}

# Whether the engine is reached over TCP (serve --listen): it may be on
# another machine, so it gets files' contents, never paths.
engine_is_remote <- function() {
  address <- Sys.getenv("METAFLOW_ENGINE_ADDRESS")
  nzchar(address) && !grepl("^unix:", address)
}

# The session's embedded engine (NULL until first use).
engine_session <- new.env(parent = emptyenv())

# What the embedded engine was started with: it reads Metaflow's and AWS's
# settings from its environment (and the config file) when it starts, so a
# change of any of them, or of set_metadata(), means a new engine.
engine_fingerprint <- function() {
  env <- Sys.getenv()
  keep <- grepl("^(METAFLOW_|AWS_)", names(env))
  cfg <- mf_config_file()
  list(env = env[keep], datastore = datastore_env(), path = Sys.getenv("PATH"),
       config = if (file.exists(cfg)) c(cfg, as.character(file.mtime(cfg))) else cfg)
}

engine_alive <- function(engine) {
  pid <- engine$pid
  if (is.null(pid) || is.na(pid) || !isTRUE(tools::pskill(pid, 0L))) return(FALSE)
  # An engine that has exited is a zombie until its new parent (init, once
  # the shell that started it is gone) reaps it: a second or more in some
  # containers, never where pid 1 does not reap. Signal 0 still reaches a
  # zombie, so its state is read.
  stat <- suppressWarnings(tryCatch(readLines(sprintf("/proc/%d/stat", pid), n = 1L, warn = FALSE),
                                    error = function(e) character(0)))
  !(length(stat) == 1L && grepl("^[0-9]+ \\(.*\\) [ZX] ", stat))
}

# The session's engine, started (or restarted, when its settings changed or
# it died) as needed.
session_engine <- function() {
  fp <- engine_fingerprint()
  e <- engine_session$engine
  if (!is.null(e)) {
    if (identical(e$fingerprint, fp) && engine_alive(e)) return(e)
    engine_session$engine <- NULL
    engine_stop(e)
  }
  e <- engine_start(env = fp$datastore)
  e$fingerprint <- fp
  engine_session$engine <- e
  e
}

#' Stop the session's embedded engine
#'
#' It is started again on the next call that needs it. R stops it when it
#' exits, and so does unloading the package.
#' @return NULL, invisibly.
#' @noRd
stop_session_engine <- function() {
  e <- engine_session$engine
  engine_session$engine <- NULL
  if (!is.null(e)) engine_stop(e)
  invisible(NULL)
}

#' Run code with a connection to the engine
#'
#' With METAFLOW_ENGINE_ADDRESS set (unix:///path or host:port) the engine
#' there is used, with METAFLOW_ENGINE_TOKEN as bearer token over TCP.
#' Otherwise the session's embedded engine, started on first use.
#'
#' @param fun function(conn) making gRPC calls with conn.
#' @return what fun returns.
#' @noRd
with_engine <- function(fun) {
  address <- Sys.getenv("METAFLOW_ENGINE_ADDRESS")
  if (nzchar(address)) {
    if (datastore_choice()$explicit) {
      stop("set_metadata() and --datastore choose the datastore of the embedded engine; ",
           "the engine at METAFLOW_ENGINE_ADDRESS uses the one it was started with: ",
           "call reset_default_metadata() or unset METAFLOW_ENGINE_ADDRESS", call. = FALSE)
    }
    return(fun(engine_connection(address, Sys.getenv("METAFLOW_ENGINE_TOKEN"))))
  }
  engine <- session_engine()
  tryCatch(fun(engine$conn), metaflow_transport_error = function(e) {
    # The embedded engine died: its log says why; the next call starts another.
    log <- if (file.exists(engine$log)) readLines(engine$log, warn = FALSE) else character(0)
    if (!engine_alive(engine)) {
      engine_session$engine <- NULL
      unlink(engine$dir, recursive = TRUE)
    }
    if (length(log)) {
      e$message <- paste0(conditionMessage(e), "\nlast lines of the engine's log:\n",
                          paste(utils::tail(log, 20), collapse = "\n"))
    }
    stop(e)
  })
}
