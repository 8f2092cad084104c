# gRPC over HTTP/2 with the curl package. A gRPC message on the wire is a
# 5-byte prefix (compressed flag, 4-byte big-endian length) followed by the
# protobuf bytes; the call's outcome is in the grpc-status / grpc-message
# trailers, which libcurl hands over together with the response headers.

grpc_service <- "metaflow.v1.Engine"

# Request/response types of each method of the Engine service.
grpc_methods <- list(
  Validate = c("RunRequest", "ValidateResponse"),
  StartRun = c("RunRequest", "RunEvent"),
  CancelRun = c("CancelRunRequest", "CancelRunResponse"),
  Logs = c("LogsRequest", "LogsResponse"),
  ListRuns = c("ListRunsRequest", "ListRunsResponse"),
  ListFlows = c("ListFlowsRequest", "ListFlowsResponse"),
  GetRun = c("GetRunRequest", "RunInfo"),
  GetTask = c("GetTaskRequest", "TaskInfo"),
  ReadArtifact = c("ReadArtifactRequest", "ArtifactChunk"),
  Shutdown = c("ShutdownRequest", "ShutdownResponse"),
  BatchJobs = c("BatchJobsRequest", "BatchJobsResponse")
)

grpc_frame <- function(msg) {
  n <- length(msg)
  len <- as.raw(c(n %/% 2^24, (n %/% 2^16) %% 256, (n %/% 2^8) %% 256, n %% 256))
  c(as.raw(0), len, msg)
}

# Returns a stateful reader: push(chunk) appends bytes as they arrive from
# the network and returns the list of complete messages (raw vectors) now
# available; a frame may be split over any number of chunks.
grpc_frame_reader <- function() {
  buf <- raw(0)
  push <- function(chunk) {
    buf <<- c(buf, chunk)
    msgs <- list()
    while (length(buf) >= 5) {
      b <- as.numeric(as.integer(buf[2:5]))
      len <- sum(b * 256^(3:0))
      if (length(buf) < 5 + len) break
      if (buf[1] != as.raw(0)) {
        stop("the engine sent a compressed gRPC message, which is not supported",
             call. = FALSE)
      }
      msgs[[length(msgs) + 1]] <- if (len > 0) buf[6:(5 + len)] else raw(0)
      buf <<- if (length(buf) > 5 + len) buf[(6 + len):length(buf)] else raw(0)
    }
    msgs
  }
  pending <- function() length(buf)
  list(push = push, pending = pending)
}

grpc_url <- function(conn, method) {
  paste0(conn$base_url, "/", grpc_service, "/", method)
}

# A fresh connection per call: reusing an HTTP/2 connection fails with
# "Error in the HTTP2 framing layer" in libcurl 7.88. A new handle is not
# enough, since the curl package pools connections across handles:
# fresh_connect and forbid_reuse keep every call on its own connection.
grpc_handle <- function(conn, body, timeout = 0) {
  h <- curl::new_handle()
  opts <- list(http_version = 5L, post = TRUE, postfields = body,
               postfieldsize = length(body), connecttimeout = 10,
               fresh_connect = TRUE, forbid_reuse = TRUE)
  if (timeout > 0) opts$timeout <- timeout
  if (!is.null(conn$socket)) opts$unix_socket_path <- conn$socket
  curl::handle_setopt(h, .list = opts)
  headers <- list("content-type" = "application/grpc", te = "trailers")
  if (!is.null(conn$token) && nzchar(conn$token)) {
    headers$authorization <- paste("Bearer", conn$token)
  }
  curl::handle_setheaders(h, .list = headers)
  h
}

# Header lines (headers and trailers) of a response as a named character
# vector, lower-case names, later values last.
grpc_header_fields <- function(raw_headers) {
  if (!length(raw_headers)) return(character(0))
  # Read every line ourselves: the trailers come in a block after the
  # headers and curl::parse_headers() would keep only one block.
  txt <- strsplit(rawToChar(raw_headers[raw_headers != as.raw(0)]), "\r?\n")[[1]]
  txt <- txt[grepl(":", txt, fixed = TRUE) & !grepl("^HTTP/", txt)]
  if (!length(txt)) return(character(0))
  key <- tolower(trimws(sub(":.*$", "", txt)))
  val <- trimws(sub("^[^:]*:", "", txt))
  stats::setNames(val, key)
}

grpc_status_error <- function(fields, http_status) {
  status <- unname(fields[names(fields) == "grpc-status"])
  if (!length(status)) {
    return(sprintf("the metaflow engine answered HTTP %s without a gRPC status",
                   http_status))
  }
  status <- status[length(status)]
  if (status == "0") return(NULL)
  msg <- unname(fields[names(fields) == "grpc-message"])
  msg <- if (length(msg)) curl::curl_unescape(msg[length(msg)]) else ""
  Encoding(msg) <- "UTF-8"
  if (!nzchar(msg)) msg <- sprintf("the metaflow engine failed (gRPC status %s)", status)
  msg
}

grpc_transport_error <- function(e, conn) {
  msg <- sprintf("cannot reach the metaflow engine at %s: %s", conn$label,
                 conditionMessage(e))
  stop(structure(class = c("metaflow_transport_error", "error", "condition"),
                 list(message = msg, call = NULL)))
}

#' Unary gRPC call
#'
#' @param conn connection from engine_connection().
#' @param method method name of the Engine service.
#' @param msg request as a named list.
#' @return the decoded response.
#' @noRd
grpc_unary <- function(conn, method, msg = list(), timeout = 0) {
  types <- grpc_methods[[method]]
  body <- grpc_frame(proto_encode(msg, types[1]))
  h <- grpc_handle(conn, body, timeout)
  res <- tryCatch(curl::curl_fetch_memory(grpc_url(conn, method), handle = h),
                  error = function(e) grpc_transport_error(e, conn))
  err <- grpc_status_error(grpc_header_fields(res$headers), res$status_code)
  if (!is.null(err)) stop(err, call. = FALSE)
  msgs <- grpc_frame_reader()$push(res$content)
  if (length(msgs) != 1) {
    stop(sprintf("the metaflow engine sent %d messages for %s, expected 1",
                 length(msgs), method), call. = FALSE)
  }
  proto_decode(msgs[[1]], types[2])
}

#' Server-streaming gRPC call
#'
#' Calls handler(message) for every message as soon as its last byte has
#' arrived, so a run's console shows up live.
#' @noRd
grpc_stream <- function(conn, method, msg, handler) {
  types <- grpc_methods[[method]]
  body <- grpc_frame(proto_encode(msg, types[1]))
  h <- grpc_handle(conn, body)
  reader <- grpc_frame_reader()
  in_handler <- FALSE
  on_chunk <- function(chunk) {
    for (m in reader$push(chunk)) {
      ev <- proto_decode(m, types[2])
      in_handler <<- TRUE
      handler(ev)
      in_handler <<- FALSE
    }
  }
  res <- tryCatch(
    curl::curl_fetch_stream(grpc_url(conn, method), on_chunk, handle = h),
    error = function(e) {
      # Errors raised by the handler are the caller's, not the network's.
      if (in_handler) stop(e)
      grpc_transport_error(e, conn)
    })
  err <- grpc_status_error(grpc_header_fields(res$headers), res$status_code)
  if (!is.null(err)) stop(err, call. = FALSE)
  if (reader$pending() > 0) {
    stop("the metaflow engine closed the stream in the middle of a message",
         call. = FALSE)
  }
  invisible(NULL)
}
