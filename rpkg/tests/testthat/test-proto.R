# The protobuf codec is checked against protoc with proto/engine.proto.

protoc_or_skip <- function() {
  protoc <- Sys.which("protoc")
  if (!nzchar(protoc)) skip("protoc is not installed")
  root <- repo_root()
  if (!nzchar(root) || !file.exists(file.path(root, "proto", "engine.proto"))) {
    skip("proto/engine.proto not found (set METAFLOW_REPO_ROOT)")
  }
  list(protoc = protoc, root = root)
}

# Runs protoc --encode/--decode for metaflow.v1.<type> on input (raw or text).
protoc <- function(mode, type, input) {
  p <- protoc_or_skip()
  infile <- tempfile()
  outfile <- tempfile()
  on.exit(unlink(c(infile, outfile)))
  if (is.raw(input)) writeBin(input, infile) else writeLines(input, infile, useBytes = TRUE)
  status <- system2(p$protoc, c(paste0("--", mode, "=metaflow.v1.", type), "-I",
                                shQuote(file.path(p$root, "proto")),
                                shQuote(file.path(p$root, "proto", "engine.proto"))),
                    stdin = infile, stdout = outfile, stderr = FALSE)
  if (!identical(as.integer(status), 0L)) stop("protoc failed for ", type)
  readBin(outfile, raw(), file.size(outfile))
}

run_request_text <- c(
  'flow {',
  '  name: "HelloFlow"',
  '  steps { name: "start" next: "a" next: "b" decorators { name: "retry" args { key: "times" value: "3" } } }',
  '  steps { name: "a" next: "join" foreach: "xs" }',
  '  steps { name: "b" next: "join" }',
  '  steps { name: "join" next: "end" join: true decorators { name: "catch" } }',
  '  steps { name: "end" }',
  '  parameters { name: "alpha" value: "\\000\\001\\377\\200" help: "r\\303\\251sum\\303\\251" required: true has_value: true }',
  '  parameters { name: "empty" }',
  '  code: "X\\n\\000\\000"',
  '}',
  'options {',
  '  max_workers: -1',
  '  max_num_splits: 300',
  '  tags: "a" tags: "b c"',
  '  with { name: "timeout" args { key: "seconds" value: "30" } args { key: "minutes" value: "1" } }',
  '  resume: true resume_step: "a" origin_run_id: "15"',
  '  datastore_root: "/tmp/.metaflow" rscript: "/usr/bin/Rscript" user: "alice" workdir: "/tmp"',
  '}')

run_request_list <- list(
  flow = list(
    name = "HelloFlow",
    steps = list(
      list(name = "start", `next` = c("a", "b"),
           decorators = list(list(name = "retry", args = list(list(key = "times", value = "3"))))),
      list(name = "a", `next` = "join", foreach = "xs"),
      list(name = "b", `next` = "join"),
      list(name = "join", `next` = "end", join = TRUE, decorators = list(list(name = "catch"))),
      list(name = "end")),
    parameters = list(
      list(name = "alpha", value = as.raw(c(0, 1, 255, 128)), help = "r\u00e9sum\u00e9",
           required = TRUE, has_value = TRUE),
      list(name = "empty", value = raw(0), required = FALSE)),
    code = as.raw(c(0x58, 0x0a, 0, 0))),
  options = list(
    max_workers = -1L, max_num_splits = 300L, tags = c("a", "b c"),
    with = list(list(name = "timeout", args = list(list(key = "seconds", value = "30"),
                                                  list(key = "minutes", value = "1")))),
    resume = TRUE, resume_step = "a", origin_run_id = "15",
    datastore_root = "/tmp/.metaflow", rscript = "/usr/bin/Rscript", user = "alice",
    workdir = "/tmp"))

test_that("RunRequest encodes byte for byte like protoc", {
  expected <- protoc("encode", "RunRequest", run_request_text)
  expect_identical(proto_encode(run_request_list, "RunRequest"), expected)
})

test_that("protoc decodes what R encodes", {
  bytes <- proto_encode(run_request_list, "RunRequest")
  txt <- rawToChar(protoc("decode", "RunRequest", bytes))
  expect_match(txt, 'name: "HelloFlow"', fixed = TRUE)
  expect_match(txt, "max_workers: -1", fixed = TRUE)
  expect_match(txt, 'origin_run_id: "15"', fixed = TRUE)
  # And R decodes protoc's encoding back to the same values.
  back <- proto_decode(protoc("encode", "RunRequest", txt), "RunRequest")
  expect_identical(proto_encode(back, "RunRequest"), bytes)
  expect_equal(back$options$max_workers, -1L)
  expect_equal(back$options$tags, c("a", "b c"))
  expect_equal(back$flow$parameters[[1]]$value, as.raw(c(0, 1, 255, 128)))
  expect_equal(back$flow$parameters[[1]]$help, "r\u00e9sum\u00e9")
  expect_equal(back$flow$parameters[[2]]$has_value, FALSE)
  expect_equal(back$flow$steps[[2]]$foreach, "xs")
  expect_equal(back$flow$steps[[1]]$`next`, c("a", "b"))
  expect_equal(back$flow$steps[[5]]$`next`, character(0))
  expect_equal(back$flow$steps[[1]]$decorators[[1]]$args[[1]]$value, "3")
})

test_that("responses from protoc decode with defaults for missing fields", {
  txt <- c('step: "start" task_id: "7" status: "completed" attempt: 2 pid: 12345',
           'started_at: "2026-01-01T00:00:00.000Z"',
           'artifacts { name: "x" sha: "ab" size: 1099511627776 path: "/d/ab" }',
           'artifacts { name: "big" size: 9007199254740992 }',
           'foreach_index: -1')
  ti <- proto_decode(protoc("encode", "TaskInfo", txt), "TaskInfo")
  expect_equal(ti$status, "completed")
  expect_identical(ti$attempt, 2L)
  expect_identical(ti$pid, 12345L)
  expect_identical(ti$foreach_index, -1L)
  expect_equal(ti$finished_at, "")
  expect_equal(ti$stdout_path, "")
  expect_length(ti$artifacts, 2)
  expect_identical(ti$artifacts[[1]]$size, 2^40)
  expect_identical(ti$artifacts[[2]]$size, 2^53)
  expect_equal(ti$artifacts[[2]]$path, "")
  expect_null(ti$artifacts[[1]]$stamp)

  # A verified stamp: times as seconds + nanoseconds.
  st <- proto_decode(protoc("encode", "TaskInfo", c(
    'artifacts { name: "x" sha: "ab" size: 3 path: "/d/ab"',
    '  stamp { size: 3 mtime_sec: 1796065177 mtime_nsec: 611828069',
    '          ctime_sec: 1796065178 ctime_nsec: 999999999 } }')), "TaskInfo")$artifacts[[1]]$stamp
  expect_identical(st$size, 3)
  expect_identical(st$mtime_sec, 1796065177)
  expect_identical(st$mtime_nsec, 611828069L)
  expect_identical(st$ctime_sec, 1796065178)
  expect_identical(st$ctime_nsec, 999999999L)

  ev <- proto_decode(protoc("encode", "RunEvent", 'kind: RUN_FINISHED run_id: "3" error: "boom"'),
                     "RunEvent")
  expect_identical(ev$kind, RUN_EVENT_RUN_FINISHED)
  expect_false(ev$success)
  expect_equal(ev$error, "boom")

  info <- proto_decode(protoc("encode", "RunInfo", c(
    'flow: "F" run_id: "2" status: "failed" tags: "x"',
    'steps { name: "start" tasks { task_id: "1" } tasks { task_id: "2" } }')), "RunInfo")
  expect_equal(info$steps[[1]]$name, "start")
  expect_equal(vapply(info$steps[[1]]$tasks, `[[`, "", "task_id"), c("1", "2"))
  expect_equal(info$origin_run_id, "")

  expect_length(proto_decode(raw(0), "ShutdownResponse"), 0)
  expect_equal(proto_decode(protoc("encode", "CancelRunResponse", "killed_tasks: 3"),
                            "CancelRunResponse")$killed_tasks, 3L)
  cr <- proto_decode(protoc("encode", "CancelRunResponse", c(
    'killed_tasks: 1 jobs { job_id: "j1" step: "work" task_id: "3" attempt: 1 executor: "AWS Batch"',
    'decorator: "batch" ended: false error: "unreachable" } jobs { job_id: "j2" ended: true }')),
    "CancelRunResponse")
  expect_equal(vapply(cr$jobs, `[[`, "", "job_id"), c("j1", "j2"))
  expect_equal(vapply(cr$jobs, `[[`, NA, "ended"), c(FALSE, TRUE))
  expect_equal(cr$jobs[[1]][c("step", "task_id", "attempt", "executor", "decorator", "error")],
               list(step = "work", task_id = "3", attempt = 1L, executor = "AWS Batch",
                    decorator = "batch", error = "unreachable"))
})

test_that("every message of engine.proto has a matching schema", {
  p <- protoc_or_skip()
  proto <- readLines(file.path(p$root, "proto", "engine.proto"))
  messages <- sub("^message (\\w+).*$", "\\1", grep("^message \\w+", proto, value = TRUE))
  expect_setequal(messages, names(proto_schemas))
  # Field names and numbers, as written in the .proto file.
  for (m in messages) {
    start <- grep(paste0("^message ", m, " "), proto)
    if (grepl("\\{\\}\\s*$", proto[start])) {
      expect_length(proto_schemas[[m]], 0)
      next
    }
    end <- start + which(proto[(start + 1):length(proto)] == "}")[1]
    body <- proto[start:end]
    fields <- regmatches(body, regexec("^\\s+(repeated )?(\\w+) (\\w+) = (\\d+);", body))
    fields <- Filter(length, fields)
    got <- vapply(proto_schemas[[m]], function(f) paste(f$name, f$number), "")
    want <- vapply(fields, function(f) paste(f[4], f[5]), "")
    expect_equal(got, want, info = m)
    reps <- vapply(fields, function(f) nzchar(f[2]), NA)
    expect_equal(vapply(proto_schemas[[m]], `[[`, NA, "repeated"), reps, info = m)
    # Types: scalars by name, other messages as "message", enums as "enum".
    want_type <- vapply(fields, function(f) {
      if (f[3] %in% c("string", "bytes", "bool", "int32", "int64")) f[3]
      else if (f[3] %in% messages) paste0("message:", f[3]) else "enum"
    }, "")
    got_type <- vapply(proto_schemas[[m]], function(f) {
      if (f$type == "message") paste0("message:", f$message) else f$type
    }, "")
    expect_equal(got_type, want_type, info = m)
  }
})

test_that("varints round-trip over the int32/int64 range", {
  for (x in c(0, 1, 127, 128, 300, 2^31 - 1, -1, -2^31, 2^40, 2^53, -2^40)) {
    v <- varint_read(varint_encode(x), 1L)
    type <- if (abs(x) < 2^31) "int32" else "int64"
    expect_equal(as.numeric(varint_value(v, type)), x, info = x)
  }
  expect_identical(varint_encode(300), as.raw(c(0xac, 0x02)))
  expect_length(varint_encode(-1), 10)
  expect_error(varint_read(as.raw(0x80), 1L), "truncated")
})

test_that("packed repeated scalars and unknown fields are tolerated", {
  schemas <- list(M = list(pf("ids", 1, "int32", TRUE), pf("name", 2, "string")))
  # ids packed (wire type 2) as 1, 300, -1; field 9 unknown varint; name "x".
  packed <- c(as.raw(c(0x0a, 0x0d, 0x01, 0xac, 0x02)), varint_encode(-1))
  buf <- c(packed, as.raw(c(0x48, 0x05, 0x12, 0x01, 0x78)))
  m <- proto_decode(buf, "M", schemas)
  expect_identical(m$ids, c(1L, 300L, -1L))
  expect_equal(m$name, "x")
  # Unpacked repeated encoding decodes the same.
  expect_identical(proto_decode(proto_encode(list(ids = c(1L, 300L, -1L)), "M", schemas),
                                "M", schemas)$ids, c(1L, 300L, -1L))
})

test_that("encoding errors are clear", {
  expect_error(proto_encode(list(bogus = 1), "RunOptions"), "unknown field\\(s\\) for RunOptions: bogus")
  expect_error(proto_encode(list(user = c("a", "b")), "RunOptions"), "must be a single value")
  expect_error(proto_encode(list(), "Nope"), "unknown protobuf message type")
})

test_that("BatchJobsRequest encodes like protoc and BatchJobsResponse decodes protoc's bytes", {
  req <- list(flow = "BigSumFlowR", datastore_root = "/tmp/.metaflow", run_id = "15",
              user = "savin", all_runs = FALSE, kill = TRUE)
  expect_identical(proto_encode(req, "BatchJobsRequest"), protoc("encode", "BatchJobsRequest",
    'flow: "BigSumFlowR" datastore_root: "/tmp/.metaflow" run_id: "15" user: "savin" kill: true'))
  req <- list(flow = "F", datastore_root = "/d", user = "s\u00e9bastien", all_runs = TRUE)
  expect_identical(proto_encode(req, "BatchJobsRequest"), protoc("encode", "BatchJobsRequest",
    'flow: "F" datastore_root: "/d" user: "s\\303\\251bastien" all_runs: true'))
  txt <- c('jobs { job_id: "1234-abcd" name: "mf-F-savin-15-start-1-0" status: "RUNNING"',
           '       run_id: "15" step: "start" task_id: "1" user: "savin" }',
           'jobs { job_id: "5678" status: "SUBMITTED" run_id: "15" step: "work" task_id: "3"',
           '       user: "savin" attempt: 2 error: "terminate job 5678: denied" }',
           'killed: 1 run_id: "15" queue: "metaflow-queue"')
  bytes <- protoc("encode", "BatchJobsResponse", txt)
  res <- proto_decode(bytes, "BatchJobsResponse")
  expect_identical(res$killed, 1L)
  expect_equal(res$run_id, "15")
  expect_equal(res$queue, "metaflow-queue")
  expect_length(res$jobs, 2)
  expect_equal(res$jobs[[1]]$name, "mf-F-savin-15-start-1-0")
  expect_identical(res$jobs[[1]]$attempt, 0L)
  expect_equal(res$jobs[[1]]$error, "")
  expect_identical(res$jobs[[2]]$attempt, 2L)
  expect_equal(res$jobs[[2]]$error, "terminate job 5678: denied")
  expect_equal(res$jobs[[2]]$name, "")
  # And back: R's encoding of the decoded response is protoc's.
  expect_identical(proto_encode(res, "BatchJobsResponse"), bytes)
  empty <- proto_decode(raw(0), "BatchJobsResponse")
  expect_length(empty$jobs, 0)
  expect_identical(empty$killed, 0L)
})

test_that("the code package, ListFlows and run/task errors encode and decode like protoc", {
  req <- list(flow = list(name = "F", code = as.raw(1:3),
                          package = list(list(path = "flow.R", content = charToRaw("x <- 1\n")),
                                         list(path = "data/m.csv", content = as.raw(c(0, 255))),
                                         list(path = "empty.R", content = raw(0)))),
              options = list(max_workers = 1L))
  expect_identical(proto_encode(req, "RunRequest"), protoc("encode", "RunRequest", c(
    'flow { name: "F" code: "\\001\\002\\003"',
    '  package { path: "flow.R" content: "x <- 1\\n" }',
    '  package { path: "data/m.csv" content: "\\000\\377" }',
    '  package { path: "empty.R" } }',
    'options { max_workers: 1 }')))
  expect_identical(proto_encode(list(datastore_root = "/d/.metaflow"), "ListFlowsRequest"),
                   protoc("encode", "ListFlowsRequest", 'datastore_root: "/d/.metaflow"'))
  flows <- proto_decode(protoc("encode", "ListFlowsResponse", 'flows: "AFlow" flows: "ZFlow"'),
                        "ListFlowsResponse")
  expect_identical(flows$flows, c("AFlow", "ZFlow"))
  expect_identical(proto_decode(raw(0), "ListFlowsResponse")$flows, character(0))
  info <- proto_decode(protoc("encode", "RunInfo", c(
    'flow: "F" run_id: "2" status: "failed" error: "step a failed: Error in f(): boom"',
    'steps { name: "a" tasks { task_id: "1" status: "failed" error: "Error in f(): boom" exit_code: 1 } }',
    'code_package { path: "data/m.csv" sha: "ab" size: 5000000000 }',
    'code_package { path: "flow.R" sha: "cd" size: 7 }')), "RunInfo")
  expect_equal(info$error, "step a failed: Error in f(): boom")
  expect_equal(info$steps[[1]]$tasks[[1]]$error, "Error in f(): boom")
  expect_identical(info$steps[[1]]$tasks[[1]]$exit_code, 1L)
  expect_equal(vapply(info$code_package, `[[`, "", "path"), c("data/m.csv", "flow.R"))
  expect_identical(info$code_package[[1]]$size, 5e9)
  ti <- proto_decode(protoc("encode", "TaskInfo", 'task_id: "1" exit_code: -1'), "TaskInfo")
  expect_identical(ti$exit_code, -1L)
  expect_equal(ti$error, "")
  expect_length(proto_decode(raw(0), "RunInfo")$code_package, 0)
})

test_that("ReadArtifact's request and chunks encode and decode like protoc", {
  req <- list(datastore_root = "/d/.metaflow", flow = "F", run_id = "3", step = "end",
              task_id = "7", name = "x")
  expect_identical(proto_encode(req, "ReadArtifactRequest"), protoc("encode", "ReadArtifactRequest",
    'datastore_root: "/d/.metaflow" flow: "F" run_id: "3" step: "end" task_id: "7" name: "x"'))
  ch <- proto_decode(protoc("encode", "ArtifactChunk", 'data: "\\001\\000\\377" size: 5000000000'),
                     "ArtifactChunk")
  expect_identical(ch$data, as.raw(c(1, 0, 255)))
  expect_identical(ch$size, 5e9)
  empty <- proto_decode(raw(0), "ArtifactChunk")
  expect_identical(empty$data, raw(0))
})
