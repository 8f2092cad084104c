# A schema-driven protobuf (proto3) codec for the messages of
# proto/engine.proto. Messages are named lists whose element names are the
# proto field names. The schemas below must mirror engine.proto field for
# field; tests/testthat/test-proto.R checks them against protoc.

pf <- function(name, number, type, repeated = FALSE, message = NULL) {
  list(name = name, number = number, type = type, repeated = repeated,
       message = message)
}

proto_schemas <- list(
  Arg = list(pf("key", 1, "string"), pf("value", 2, "string")),
  Decorator = list(pf("name", 1, "string"),
                   pf("args", 2, "message", TRUE, "Arg")),
  Step = list(pf("name", 1, "string"), pf("next", 2, "string", TRUE),
              pf("foreach", 3, "string"), pf("join", 4, "bool"),
              pf("decorators", 5, "message", TRUE, "Decorator")),
  Parameter = list(pf("name", 1, "string"), pf("value", 2, "bytes"),
                   pf("help", 3, "string"), pf("required", 4, "bool"),
                   pf("has_value", 5, "bool")),
  Flow = list(pf("name", 1, "string"),
              pf("steps", 2, "message", TRUE, "Step"),
              pf("parameters", 3, "message", TRUE, "Parameter"),
              pf("code", 4, "bytes"),
              pf("package", 5, "message", TRUE, "PackageFile")),
  PackageFile = list(pf("path", 1, "string"), pf("content", 2, "bytes")),
  RunOptions = list(pf("max_workers", 1, "int32"),
                    pf("max_num_splits", 2, "int32"),
                    pf("tags", 3, "string", TRUE),
                    pf("with", 4, "message", TRUE, "Decorator"),
                    pf("resume", 5, "bool"), pf("resume_step", 6, "string"),
                    pf("origin_run_id", 7, "string"),
                    pf("datastore_root", 8, "string"),
                    pf("rscript", 9, "string"), pf("user", 10, "string"),
                    pf("workdir", 11, "string")),
  RunRequest = list(pf("flow", 1, "message", FALSE, "Flow"),
                    pf("options", 2, "message", FALSE, "RunOptions")),
  ValidateResponse = list(pf("order", 1, "string", TRUE)),
  RunEvent = list(pf("kind", 1, "enum"), pf("run_id", 2, "string"),
                  pf("line", 3, "string"), pf("stderr", 4, "bool"),
                  pf("success", 5, "bool"), pf("error", 6, "string")),
  CancelRunRequest = list(pf("run_id", 1, "string"),
                          pf("datastore_root", 2, "string"),
                          pf("flow", 3, "string")),
  CancelRunResponse = list(pf("killed_tasks", 1, "int32"),
                           pf("jobs", 2, "message", TRUE, "StoppedJob")),
  StoppedJob = list(pf("job_id", 1, "string"), pf("step", 2, "string"),
                    pf("task_id", 3, "string"), pf("attempt", 4, "int32"),
                    pf("executor", 5, "string"), pf("decorator", 6, "string"),
                    pf("ended", 7, "bool"), pf("error", 8, "string")),
  LogsRequest = list(pf("datastore_root", 1, "string"),
                     pf("flow", 2, "string"), pf("pathspec", 3, "string"),
                     pf("attempt", 4, "int32"), pf("has_attempt", 5, "bool")),
  TaskLog = list(pf("step", 1, "string"), pf("task_id", 2, "string"),
                 pf("attempt", 3, "int32"), pf("stdout", 4, "string"),
                 pf("stderr", 5, "string")),
  LogsResponse = list(pf("tasks", 1, "message", TRUE, "TaskLog")),
  ListRunsRequest = list(pf("datastore_root", 1, "string"),
                         pf("flow", 2, "string")),
  ArtifactInfo = list(pf("name", 1, "string"), pf("sha", 2, "string"),
                      pf("size", 3, "int64"), pf("path", 4, "string"),
                      pf("stamp", 5, "message", FALSE, "FileStamp")),
  FileStamp = list(pf("size", 1, "int64"), pf("mtime_sec", 2, "int64"),
                   pf("mtime_nsec", 3, "int32"), pf("ctime_sec", 4, "int64"),
                   pf("ctime_nsec", 5, "int32")),
  TaskInfo = list(pf("step", 1, "string"), pf("task_id", 2, "string"),
                  pf("status", 3, "string"), pf("attempt", 4, "int32"),
                  pf("pid", 5, "int32"), pf("started_at", 6, "string"),
                  pf("finished_at", 7, "string"),
                  pf("artifacts", 8, "message", TRUE, "ArtifactInfo"),
                  pf("stdout_path", 9, "string"),
                  pf("stderr_path", 10, "string"),
                  pf("foreach_index", 11, "int32"),
                  pf("error", 12, "string"), pf("exit_code", 13, "int32")),
  StepInfo = list(pf("name", 1, "string"),
                  pf("tasks", 2, "message", TRUE, "TaskInfo")),
  RunInfo = list(pf("flow", 1, "string"), pf("run_id", 2, "string"),
                 pf("status", 3, "string"), pf("user", 4, "string"),
                 pf("tags", 5, "string", TRUE), pf("created_at", 6, "string"),
                 pf("finished_at", 7, "string"),
                 pf("steps", 8, "message", TRUE, "StepInfo"),
                 pf("origin_run_id", 9, "string"), pf("error", 10, "string"),
                 pf("code_package", 11, "message", TRUE, "CodeFile"),
                 pf("jobs_left_running", 12, "message", TRUE, "StoppedJob")),
  CodeFile = list(pf("path", 1, "string"), pf("sha", 2, "string"),
                  pf("size", 3, "int64")),
  ListRunsResponse = list(pf("runs", 1, "message", TRUE, "RunInfo")),
  GetRunRequest = list(pf("datastore_root", 1, "string"),
                       pf("flow", 2, "string"), pf("run_id", 3, "string")),
  GetTaskRequest = list(pf("datastore_root", 1, "string"),
                        pf("flow", 2, "string"), pf("run_id", 3, "string"),
                        pf("step", 4, "string"), pf("task_id", 5, "string"),
                        pf("artifact", 6, "string")),
  ListFlowsRequest = list(pf("datastore_root", 1, "string")),
  ListFlowsResponse = list(pf("flows", 1, "string", TRUE)),
  ReadArtifactRequest = list(pf("datastore_root", 1, "string"), pf("flow", 2, "string"),
                             pf("run_id", 3, "string"), pf("step", 4, "string"),
                             pf("task_id", 5, "string"), pf("name", 6, "string")),
  ArtifactChunk = list(pf("data", 1, "bytes"), pf("size", 2, "int64")),
  ShutdownRequest = list(),
  ShutdownResponse = list(),
  BatchJobsRequest = list(pf("flow", 1, "string"), pf("datastore_root", 2, "string"),
                          pf("run_id", 3, "string"), pf("user", 4, "string"),
                          pf("all_runs", 5, "bool"), pf("kill", 6, "bool")),
  BatchJob = list(pf("job_id", 1, "string"), pf("name", 2, "string"),
                  pf("status", 3, "string"), pf("run_id", 4, "string"),
                  pf("step", 5, "string"), pf("task_id", 6, "string"),
                  pf("user", 7, "string"), pf("attempt", 8, "int32"),
                  pf("error", 9, "string")),
  BatchJobsResponse = list(pf("jobs", 1, "message", TRUE, "BatchJob"),
                           pf("killed", 2, "int32"), pf("run_id", 3, "string"),
                           pf("queue", 4, "string"))
)

# RunEvent.Kind
RUN_EVENT_LOG <- 0L
RUN_EVENT_RUN_STARTED <- 1L
RUN_EVENT_RUN_FINISHED <- 2L

proto_schema <- function(type, schemas = proto_schemas) {
  s <- schemas[[type]]
  if (is.null(s) && !type %in% names(schemas)) {
    stop("unknown protobuf message type '", type, "'", call. = FALSE)
  }
  s
}

# ---- varints -------------------------------------------------------------
# R has no 64-bit integers, so a varint is handled as two 32-bit halves held
# in doubles (exact up to 2^53, which covers int32 and the int64 sizes here).

varint_encode <- function(x) {
  x <- as.numeric(x)
  if (is.na(x) || x != trunc(x)) stop("cannot encode ", x, " as a varint", call. = FALSE)
  if (x >= 0) {
    lo <- x %% 2^32
    hi <- x %/% 2^32
  } else {
    # Two's complement over 64 bits, as protobuf does for negative ints.
    lo <- x %% 2^32
    hi <- (x - lo) / 2^32 + 2^32
  }
  out <- integer(0)
  repeat {
    b <- lo %% 128
    lo <- lo %/% 128 + (hi %% 128) * 2^25
    hi <- hi %/% 128
    if (lo == 0 && hi == 0) {
      out <- c(out, b)
      break
    }
    out <- c(out, b + 128)
  }
  as.raw(out)
}

# Reads a varint at position pos (1-based) of raw vector buf.
# Returns list(lo, hi, pos) with pos just after the varint.
varint_read <- function(buf, pos) {
  lo <- 0
  hi <- 0
  shift <- 0
  n <- length(buf)
  repeat {
    if (pos > n) stop("truncated protobuf varint", call. = FALSE)
    b <- as.integer(buf[pos])
    pos <- pos + 1L
    v <- b %% 128
    if (shift < 28) {
      lo <- lo + v * 2^shift
    } else if (shift == 28) {
      lo <- lo + (v %% 16) * 2^28
      hi <- hi + v %/% 16
    } else if (shift < 64) {
      hi <- hi + v * 2^(shift - 32)
    }
    shift <- shift + 7
    if (b < 128) break
    if (shift >= 70) stop("malformed protobuf varint", call. = FALSE)
  }
  list(lo = lo, hi = hi %% 2^32, pos = pos)
}

varint_value <- function(v, type) {
  switch(type,
    bool = (v$lo != 0 || v$hi != 0),
    int32 = , enum = {
      lo <- v$lo
      if (lo >= 2^31) lo <- lo - 2^32
      as.integer(lo)
    },
    int64 = if (v$hi >= 2^31) (v$hi - 2^32) * 2^32 + v$lo else v$hi * 2^32 + v$lo,
    stop("field of type ", type, " cannot be a varint", call. = FALSE)
  )
}

# ---- encoding ------------------------------------------------------------

proto_key <- function(number, wire) varint_encode(number * 8 + wire)

proto_len_delim <- function(number, bytes) {
  c(proto_key(number, 2), varint_encode(length(bytes)), bytes)
}

utf8_bytes <- function(x) charToRaw(enc2utf8(as.character(x)))

proto_scalar <- function(f, v, schemas) {
  switch(f$type,
    string = proto_len_delim(f$number, utf8_bytes(v)),
    bytes = proto_len_delim(f$number, as.raw(v)),
    bool = c(proto_key(f$number, 0), varint_encode(as.logical(v) * 1)),
    int32 = , int64 = , enum = c(proto_key(f$number, 0), varint_encode(v)),
    message = proto_len_delim(f$number, proto_encode(v, f$message, schemas))
  )
}

# proto3 leaves out scalars that hold their default value.
proto_is_default <- function(f, v) {
  switch(f$type,
    string = !nzchar(v),
    bytes = length(v) == 0,
    bool = !isTRUE(as.logical(v)),
    int32 = , int64 = , enum = v == 0,
    message = FALSE
  )
}

#' Encode an R list as a protobuf message
#'
#' @param msg named list with (a subset of) the message's field names.
#' @param type message type name from engine.proto, e.g. "RunRequest".
#' @param schemas the message schemas (tests pass their own).
#' @return raw vector.
#' @noRd
proto_encode <- function(msg, type, schemas = proto_schemas) {
  schema <- proto_schema(type, schemas)
  unknown <- setdiff(names(msg), vapply(schema, `[[`, "", "name"))
  if (length(unknown)) {
    stop("unknown field(s) for ", type, ": ", paste(unknown, collapse = ", "),
         call. = FALSE)
  }
  parts <- list()
  for (f in schema) {
    v <- msg[[f$name]]
    if (is.null(v)) next
    if (f$repeated) {
      if (f$type == "message") {
        for (item in v) parts[[length(parts) + 1]] <- proto_scalar(f, item, schemas)
      } else {
        for (item in as.list(v)) parts[[length(parts) + 1]] <- proto_scalar(f, item, schemas)
      }
    } else {
      if (f$type != "message" && f$type != "bytes" && length(v) != 1) {
        stop(type, ".", f$name, " must be a single value", call. = FALSE)
      }
      if (!proto_is_default(f, v)) parts[[length(parts) + 1]] <- proto_scalar(f, v, schemas)
    }
  }
  if (!length(parts)) return(raw(0))
  do.call(c, parts)
}

# ---- decoding ------------------------------------------------------------

proto_default <- function(f) {
  if (f$repeated) {
    return(switch(f$type, string = character(0), message = list(),
                  bool = logical(0), int32 = , enum = integer(0),
                  int64 = numeric(0), bytes = list()))
  }
  switch(f$type, string = "", bytes = raw(0), bool = FALSE, int32 = 0L,
         enum = 0L, int64 = 0, message = NULL)
}

bytes_to_utf8 <- function(b) {
  # rawToChar cannot hold NUL bytes; protobuf strings should never have them.
  if (any(b == as.raw(0))) b <- b[b != as.raw(0)]
  s <- rawToChar(b)
  Encoding(s) <- "UTF-8"
  s
}

#' Decode a protobuf message into an R list
#'
#' Every field of the schema is present in the result, with proto3 default
#' values for fields that were not on the wire. Unknown fields are skipped.
#' @noRd
proto_decode <- function(buf, type, schemas = proto_schemas) {
  schema <- proto_schema(type, schemas)
  by_number <- list()
  out <- list()
  for (f in schema) {
    by_number[[as.character(f$number)]] <- f
    out[f$name] <- list(proto_default(f))
  }
  # Repeated values are collected in lists and flattened at the end.
  acc <- list()
  pos <- 1L
  n <- length(buf)
  while (pos <= n) {
    key <- varint_read(buf, pos)
    pos <- key$pos
    keyval <- key$hi * 2^32 + key$lo
    number <- keyval %/% 8
    wire <- keyval %% 8
    f <- by_number[[as.character(number)]]
    if (wire == 0) {
      v <- varint_read(buf, pos)
      pos <- v$pos
      if (is.null(f)) next
      value <- varint_value(v, f$type)
    } else if (wire == 2) {
      len <- varint_read(buf, pos)
      pos <- len$pos
      len <- len$hi * 2^32 + len$lo
      if (pos + len - 1 > n) stop("truncated protobuf message", call. = FALSE)
      bytes <- if (len > 0) buf[pos:(pos + len - 1)] else raw(0)
      pos <- pos + len
      if (is.null(f)) next
      value <- switch(f$type,
        string = bytes_to_utf8(bytes),
        bytes = bytes,
        message = proto_decode(bytes, f$message, schemas),
        # Packed repeated scalars: a run of varints.
        bool = , int32 = , int64 = , enum = {
          vals <- list()
          p <- 1L
          while (p <= length(bytes)) {
            v <- varint_read(bytes, p)
            p <- v$pos
            vals[[length(vals) + 1]] <- varint_value(v, f$type)
          }
          if (!f$repeated) {
            stop("packed encoding for non-repeated field ", type, ".", f$name,
                 call. = FALSE)
          }
          acc[[f$name]] <- c(acc[[f$name]], vals)
          next
        }
      )
    } else if (wire == 1) {
      pos <- pos + 8
      if (!is.null(f)) stop("unexpected fixed64 for ", type, ".", f$name, call. = FALSE)
      next
    } else if (wire == 5) {
      pos <- pos + 4
      if (!is.null(f)) stop("unexpected fixed32 for ", type, ".", f$name, call. = FALSE)
      next
    } else {
      stop("unsupported protobuf wire type ", wire, call. = FALSE)
    }
    if (f$repeated) {
      acc[[f$name]] <- c(acc[[f$name]], list(value))
    } else {
      out[f$name] <- list(value)
    }
  }
  for (name in names(acc)) {
    f <- schema[[which(vapply(schema, `[[`, "", "name") == name)]]
    vals <- acc[[name]]
    out[[name]] <- if (f$type %in% c("message", "bytes")) vals else unlist(vals)
  }
  out
}
