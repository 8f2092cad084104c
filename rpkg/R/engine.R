# Connecting to the Go engine: either one named by METAFLOW_ENGINE_ADDRESS
# or an embedded engine started for the duration of one call.

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
engine_start <- function(timeout = 10) {
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
  system2(bin, c("serve", "--socket", shQuote(sock), "--parent-pid", Sys.getpid()),
          stdout = log, stderr = log, wait = FALSE)
  deadline <- Sys.time() + timeout
  while (!file.exists(sock)) {
    if (Sys.time() > deadline) {
      txt <- if (file.exists(log)) paste(readLines(log, warn = FALSE), collapse = "\n") else ""
      unlink(dir, recursive = TRUE)
      stop(sprintf("the metaflow engine (%s) did not start within %d s%s", bin,
                   timeout, if (nzchar(txt)) paste0("; its log:\n", txt) else ""),
           call. = FALSE)
    }
    Sys.sleep(0.01)
  }
  list(conn = engine_connection(paste0("unix://", sock)), dir = dir, log = log)
}

engine_stop <- function(engine) {
  tryCatch(grpc_unary(engine$conn, "Shutdown", list(), timeout = 5),
           error = function(e) NULL)
  unlink(engine$dir, recursive = TRUE)
  invisible(NULL)
}

#' Run code with a connection to the engine
#'
#' With METAFLOW_ENGINE_ADDRESS set (unix:///path or host:port) the engine
#' there is used, with METAFLOW_ENGINE_TOKEN as bearer token over TCP.
#' Otherwise an embedded engine is started and shut down when fun returns.
#'
#' @param fun function(conn) making gRPC calls with conn.
#' @return what fun returns.
#' @noRd
with_engine <- function(fun) {
  address <- Sys.getenv("METAFLOW_ENGINE_ADDRESS")
  if (nzchar(address)) {
    return(fun(engine_connection(address, Sys.getenv("METAFLOW_ENGINE_TOKEN"))))
  }
  engine <- engine_start()
  on.exit(engine_stop(engine), add = TRUE)
  fun(engine$conn)
}

# Root of the local datastore, shared by run() and the client API.
datastore_root <- function() {
  normalizePath(file.path(Sys.getenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", getwd()),
                          ".metaflow"), mustWork = FALSE)
}
