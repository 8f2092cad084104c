events <- list(
  list(kind = RUN_EVENT_RUN_STARTED, run_id = "15"),
  list(kind = RUN_EVENT_LOG, line = "2026-11-24 10:00:00.000 [15/start/1 (pid 1)] hello \u00e9"),
  list(kind = RUN_EVENT_LOG, line = strrep("x", 70000), stderr = TRUE),
  list(kind = RUN_EVENT_LOG, line = ""),
  list(kind = RUN_EVENT_RUN_FINISHED, run_id = "15", success = TRUE))
wire <- do.call(c, lapply(events, function(e) grpc_frame(proto_encode(e, "RunEvent"))))

decode_all <- function(chunks) {
  reader <- grpc_frame_reader()
  out <- list()
  for (ch in chunks) {
    for (m in reader$push(ch)) out[[length(out) + 1]] <- proto_decode(m, "RunEvent")
  }
  list(events = out, pending = reader$pending())
}

check_events <- function(got) {
  expect_equal(got$pending, 0)
  expect_length(got$events, length(events))
  expect_equal(got$events[[1]]$run_id, "15")
  expect_equal(got$events[[2]]$line, events[[2]]$line)
  expect_equal(nchar(got$events[[3]]$line), 70000)
  expect_true(got$events[[3]]$stderr)
  expect_equal(got$events[[4]]$kind, RUN_EVENT_LOG)
  expect_equal(got$events[[4]]$line, "")
  expect_true(got$events[[5]]$success)
}

test_that("a frame is a 5-byte prefix and the message", {
  f <- grpc_frame(as.raw(1:3))
  expect_identical(f, as.raw(c(0, 0, 0, 0, 3, 1, 2, 3)))
  expect_identical(grpc_frame(raw(70000))[1:5], as.raw(c(0, 0, 1, 0x11, 0x70)))
  expect_identical(grpc_frame(raw(0)), as.raw(c(0, 0, 0, 0, 0)))
})

test_that("frames are reassembled across any chunk boundaries", {
  check_events(decode_all(list(wire)))
  check_events(decode_all(split(wire, ceiling(seq_along(wire) / 4096))))
  # Boundaries inside every prefix: split at every offset of the first frames.
  n1 <- length(grpc_frame(proto_encode(events[[1]], "RunEvent")))
  for (cut in 1:(n1 + 6)) {
    check_events(decode_all(list(wire[1:cut], wire[(cut + 1):length(wire)])))
  }
  set.seed(1)
  for (i in 1:20) {
    cuts <- sort(unique(sample(seq_len(length(wire) - 1), 15)))
    pieces <- split(wire, findInterval(seq_along(wire), cuts + 1))
    check_events(decode_all(pieces))
  }
  # Byte by byte for a stream of small frames.
  tiny <- do.call(c, lapply(events[c(1, 2, 4, 5)], function(e) grpc_frame(proto_encode(e, "RunEvent"))))
  reader <- grpc_frame_reader()
  got <- list()
  for (b in as.list(tiny)) got <- c(got, reader$push(b))
  expect_length(got, 4)
  expect_equal(proto_decode(got[[2]], "RunEvent")$line, events[[2]]$line)
})

test_that("an incomplete frame stays pending", {
  reader <- grpc_frame_reader()
  expect_length(reader$push(wire[1:3]), 0)
  expect_equal(reader$pending(), 3)
  expect_error(grpc_frame_reader()$push(as.raw(c(1, 0, 0, 0, 0))), "compressed")
})

test_that("grpc-status and grpc-message are read from headers and trailers", {
  hdr <- function(...) charToRaw(paste0(c(...), "\r\n", collapse = ""))
  ok <- hdr("HTTP/2 200", "content-type: application/grpc", "", "grpc-status: 0", "grpc-message:")
  expect_null(grpc_status_error(grpc_header_fields(ok), 200))
  bad <- hdr("HTTP/2 200", "content-type: application/grpc", "",
             "grpc-status: 3", "grpc-message: step %27x%27: unknown next step %E2%80%9Cy%E2%80%9D")
  expect_equal(grpc_status_error(grpc_header_fields(bad), 200),
               "step 'x': unknown next step \u201cy\u201d")
  # Trailers-only response: the status is in the only header block.
  only <- hdr("HTTP/2 200", "content-type: application/grpc", "grpc-status: 16",
              "grpc-message: missing or wrong token")
  expect_equal(grpc_status_error(grpc_header_fields(only), 200), "missing or wrong token")
  none <- hdr("HTTP/2 404", "content-type: text/plain")
  expect_match(grpc_status_error(grpc_header_fields(none), 404), "HTTP 404 without a gRPC status")
  expect_match(grpc_status_error(grpc_header_fields(hdr("HTTP/2 200", "grpc-status: 13")), 200),
               "gRPC status 13")
})

test_that("engine addresses are parsed", {
  u <- engine_connection("unix:///tmp/x/engine.sock")
  expect_equal(u$socket, "/tmp/x/engine.sock")
  expect_equal(u$base_url, "http://localhost")
  t <- engine_connection("127.0.0.1:7000", token = "s3cret")
  expect_null(t$socket)
  expect_equal(t$base_url, "http://127.0.0.1:7000")
  expect_equal(t$token, "s3cret")
  expect_equal(engine_connection("[::1]:7000")$base_url, "http://[::1]:7000")
  expect_error(engine_connection("nonsense"), "invalid METAFLOW_ENGINE_ADDRESS")
  expect_equal(grpc_url(u, "Validate"), "http://localhost/metaflow.v1.Engine/Validate")
})

test_that("a missing engine binary names make install", {
  local_envvars(METAFLOW_ENGINE_BIN = "", PATH = tempdir())
  expect_error(engine_binary(), "make install")
  local_envvars(METAFLOW_ENGINE_BIN = file.path(tempdir(), "no-such-engine"))
  expect_error(engine_binary(), "does not exist")
})

test_that("an engine that exits at start is reported at once, with its log", {
  bin <- tempfile("fake-engine")
  writeLines(c("#!/bin/sh", "echo 'Error: unknown flag: --parent-pid' >&2", "exit 1"), bin)
  Sys.chmod(bin, "0755")
  local_envvars(METAFLOW_ENGINE_BIN = bin)
  started <- Sys.time()
  expect_error(engine_start(), "exited at start; its log:\nError: unknown flag: --parent-pid",
               fixed = TRUE)
  expect_lt(as.numeric(Sys.time() - started, units = "secs"), 5)
})

test_that("an unreachable engine is a one-line error", {
  local_envvars(METAFLOW_ENGINE_ADDRESS = paste0("unix://", tempfile(), ".sock"))
  err <- tryCatch(run_main(example_flow(), list(show = TRUE), character(0), FALSE),
                  error = conditionMessage)
  expect_match(err, "^cannot reach the metaflow engine at unix://")
  expect_false(grepl("\n", err))
})

test_that("an engine that has exited but is not reaped yet (a zombie) is not alive", {
  skip_on_os(c("windows", "mac", "solaris"))
  dir <- tempfile("zombie-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  # The background child exits at once; its parent then becomes `sleep`,
  # which never reaps it.
  cmd <- sprintf("echo $$ > %s/parent; sleep 0 & echo $! > %s/child; exec sleep 30", dir, dir)
  system2("/bin/sh", c("-c", shQuote(cmd)), wait = FALSE)
  read_pid <- function(f) {
    for (i in 1:500) {
      if (file.exists(f) && length(l <- readLines(f, warn = FALSE)) == 1L) return(as.integer(l))
      Sys.sleep(0.01)
    }
    stop("no pid in ", f)
  }
  parent <- read_pid(file.path(dir, "parent"))
  on.exit(tools::pskill(parent, tools::SIGKILL), add = TRUE)
  child <- read_pid(file.path(dir, "child"))
  stat <- function() readLines(sprintf("/proc/%d/stat", child), warn = FALSE)
  for (i in 1:500) if (grepl("\\) Z ", stat())) break else Sys.sleep(0.01)
  expect_true(tools::pskill(child, 0L))      # signal 0 still reaches it
  expect_false(engine_alive(list(pid = child)))
  expect_true(engine_alive(list(pid = parent)))
  expect_false(engine_alive(list(pid = NA_integer_)))
})
