# The code package on AWS Batch (against moto, with the local base-R image):
# `Rscript flow.R --package-suffixes=.R,.csv run --with batch` puts the
# flow's .R and .csv files at the same relative paths in every job's working
# directory, so read.csv("./movies.csv") works there; a second run with the
# same files stores no new blob. Skipped, with a message, without docker or
# moto_server.

FLOW <- "CodePackageFlowR"
BUCKET <- "metaflow-pkg"

# moto for this file's tests, started on first use (helper-moto.R).
pkg_state <- local({
  state <- NULL
  function() {
    if (is.null(state)) {
      state <<- moto_batch("metaflow-queue", BUCKET, flows = FLOW, label = "code package tests")
    }
    state
  }
})

# The keys under prefix in the emulator's bucket (moto answers unsigned
# ListObjectsV2; one page holds them all here).
s3_keys <- function(endpoint, prefix) {
  r <- curl::curl_fetch_memory(sprintf("%s/%s?list-type=2&max-keys=1000&prefix=%s", endpoint, BUCKET,
                                       curl::curl_escape(prefix)))
  if (r$status_code != 200) stop("moto: could not list ", prefix, ": HTTP ", r$status_code)
  xml <- rawToChar(r$content)
  sort(gsub("</?Key>", "", regmatches(xml, gregexpr("<Key>[^<]*</Key>", xml))[[1]]))
}

blob_files <- function(dir) sort(list.files(mf_path(dir, FLOW, "data"), recursive = TRUE))

test_that("Batch tasks read the package's files by relative path; a second run stores no new blob", {
  st <- pkg_state()
  if (!is.null(st$skip)) skip(st$skip)
  dir <- setup_flow("codepackageflow.R")
  movies <- "title,year\nHeat,1995\nAlien,1979\nRan,1985\n"
  writeLines(movies, file.path(dir, "movies.csv"), sep = "")
  dir.create(file.path(dir, "data"))
  writeLines(c("x", "1", "2", "39"), file.path(dir, "data", "x.csv"))
  writeLines("not in the package", file.path(dir, "notes.txt"))
  args <- c("--package-suffixes=.R,.csv", "run", "--with", "batch")
  res <- run_flow(args = args, workdir = dir, env = st$env, timeout = 240)
  expect_exit(res, 0)
  expect_line(res$stdout, sprintf("^%s \\[1/start/1 \\(pid 0\\)\\] Batch job [0-9a-f-]{36} is SUCCEEDED\\.$", TS_RE), res)
  expect_output_match(res, "titles: Heat|Alien|Ran x: 42", fixed = TRUE)
  # The artifact holds the CSV's content, read in the container.
  got <- run_cmd(dir, "Rscript", c("-e", paste(
    "suppressMessages(library(metaflow));",
    sprintf("t <- task_client$new('%s/1/start/1');", FLOW),
    "m <- t$artifact('movies'); cat(nrow(m), paste(m$title, collapse = '|'), sum(m$year))")))
  expect_equal(got$stdout, "3 Heat|Alien|Ran 5959", info = describe_result(got))
  # The run's manifest: the .R and .csv files, no others.
  man <- read_json_file(mf_path(dir, FLOW, "1", "_package.json"))
  expect_setequal(names(man), c("flow.R", "movies.csv", "data/x.csv"))
  expect_equal(man[["movies.csv"]]$size, nchar(movies))
  blobs1 <- blob_files(dir)
  keys1 <- s3_keys(st$endpoint, paste0("metaflow/", FLOW, "/data/"))
  for (f in names(man)) {
    sha <- man[[f]]$sha
    expect_true(paste0(substr(sha, 1, 2), "/", sha) %in% blobs1, info = f)
    expect_true(sprintf("metaflow/%s/data/%s/%s", FLOW, substr(sha, 1, 2), sha) %in% keys1, info = f)
  }

  res2 <- run_flow(args = args, workdir = dir, env = st$env, timeout = 240)
  expect_exit(res2, 0)
  expect_output_match(res2, "titles: Heat|Alien|Ran x: 42", fixed = TRUE)
  expect_identical(read_json_file(mf_path(dir, FLOW, "2", "_package.json")), man)
  expect_identical(blob_files(dir), blobs1)
  expect_identical(s3_keys(st$endpoint, paste0("metaflow/", FLOW, "/data/")), keys1)
})
