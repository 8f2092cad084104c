# The tutorials the package ships (rpkg/inst/tutorials): copied with
# metaflow::pull_tutorials() into a fresh directory, then run with the
# commands their READMEs give, as a user would: 00, 01 (with parameters),
# 02, the notebook of 03 knitted in the copied tree after 02 ran, and 04 on
# AWS Batch under moto (skipped without docker or moto_server).

REPO_ROOT <- normalizePath(file.path(E2E_DIR, "..", ".."))

# One copy of the tutorials for the whole file: 03 reads the run of 02.
tutorials <- local({
  dir <- NULL
  function() {
    if (!is.null(dir)) return(dir)
    home <- new_workdir("tutorials")
    res <- run_cmd(home, "Rscript", c("-e", "metaflow::pull_tutorials()"))
    expect_exit(res, 0)
    d <- file.path(home, "tutorials")
    if (!dir.exists(d)) stop("pull_tutorials() made no tutorials folder:\n", describe_result(res))
    dir <<- d
    dir
  }
})

episode <- function(name) file.path(tutorials(), name)

# Runs `Rscript <args>` in an episode's folder.
run_episode <- function(name, args, env = character(), timeout = 300) {
  run_cmd(episode(name), "Rscript", args, env = env, timeout = timeout)
}

# Evaluates R code in dir (the client API reading that folder's runs) and
# returns the value it saved with saveRDS(value, OUT).
client_value <- function(dir, code, env = character()) {
  out <- tempfile(fileext = ".rds")
  res <- run_cmd(dir, "Rscript", c("-e", paste0(
    "suppressPackageStartupMessages(library(metaflow)); OUT <- '", out, "'; ", code)), env = env)
  expect_exit(res, 0)
  if (!file.exists(out)) stop("the client code saved nothing:\n", describe_result(res))
  readRDS(out)
}

# The statistics episode 02 computes, computed here from its CSV.
expected_stats <- function(csv) {
  movies <- read.csv(csv, stringsAsFactors = FALSE)
  genres <- sort(unique(movies$genre))
  s <- data.frame(
    genre = genres,
    movies = vapply(genres, function(g) sum(movies$genre == g), 0L),
    median_gross = vapply(genres, function(g) median(movies$gross[movies$genre == g]), 0),
    mean_gross = vapply(genres, function(g) mean(movies$gross[movies$genre == g]), 0),
    stringsAsFactors = FALSE, row.names = NULL)
  s <- s[order(s$median_gross, decreasing = TRUE), ]
  rownames(s) <- NULL
  s
}

# The stats table (knitr::kable) of 03's notebook: one row per genre, as
# computed from the CSV.
expect_stats_table <- function(md, want) {
  expect_line(md, "^\\|genre\\s*\\|\\s*movies\\|\\s*median_gross\\|\\s*mean_gross\\|$")
  rows <- grep("^\\|[A-Za-z]", md, value = TRUE)
  rows <- rows[!grepl("^\\|genre", rows)]
  expect_equal(trimws(sub("^\\|([^|]*)\\|.*$", "\\1", rows)), want$genre)
  for (i in seq_len(nrow(want))) {
    expect_line(md, sprintf("^\\|%s\\s*\\|\\s*%d\\|\\s*%s\\|", want$genre[i], want$movies[i],
                            format(want$median_gross[i], big.mark = ",", scientific = FALSE)))
  }
}

test_that("pull_tutorials() copies every episode with its files", {
  d <- tutorials()
  files <- list.files(d, recursive = TRUE)
  expect_true(all(c(
    "README.md",
    "00-helloworld/helloworld.R", "00-helloworld/README.md",
    "01-branches-and-parameters/branches.R", "01-branches-and-parameters/README.md",
    "02-statistics/stats.R", "02-statistics/movies.csv", "02-statistics/README.md",
    "03-client-notebook/stats.Rmd", "03-client-notebook/README.md",
    "04-statistics-on-batch/stats.R", "04-statistics-on-batch/movies.csv",
    "04-statistics-on-batch/README.md") %in% files), info = paste(files, collapse = "\n"))
  # The copies are the package's own files.
  src <- file.path(REPO_ROOT, "rpkg", "inst", "tutorials")
  for (f in list.files(src, recursive = TRUE)) {
    expect_identical(readLines(file.path(d, f), warn = FALSE),
                     readLines(file.path(src, f), warn = FALSE), info = f)
  }
})

test_that("00-helloworld runs start -> hello -> end", {
  show <- run_episode("00-helloworld", c("helloworld.R", "show"))
  expect_exit(show, 0)
  expect_equal(grep("^Step ", show$stdout, value = TRUE), c("Step start", "Step hello", "Step end"))

  res <- run_episode("00-helloworld", c("helloworld.R", "run"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "HelloFlow is starting\\."), res)
  expect_line(res$stdout, task_line_re(1, "hello", "Metaflow says: Hi!"), res)
  expect_line(res$stdout, task_line_re(1, "end", "HelloFlow is all done\\."), res)
  logs <- run_episode("00-helloworld", c("helloworld.R", "logs", "1/hello"))
  expect_exit(logs, 0)
  expect_equal(logs$stdout, "Metaflow says: Hi!", info = describe_result(logs))
})

test_that("01-branches-and-parameters: show, and runs with and without parameters", {
  show <- run_episode("01-branches-and-parameters", c("branches.R", "show"))
  expect_exit(show, 0)
  expect_line(show$stdout, "^\\s+--alpha .*default 0\\.5.*share of the budget that goes to branch a", show)
  expect_line(show$stdout, "^\\s+--greeting .*default Hi.*how the flow says hello", show)
  expect_line(show$stdout, "^\\s+--verbose .*print the branches' values in the join", show)
  expect_line(show$stdout, "^\\s+=> a, b$", show)
  expect_line(show$stdout, "^Step join", show)

  res <- run_episode("01-branches-and-parameters",
                     c("branches.R", "run", "--alpha", "0.1", "--greeting", "Hello", "--verbose"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "Hello from start: splitting 100 between a and b"), res)
  expect_line(res$stdout, task_line_re(1, "join", "x of each branch: 10, 90"), res)
  expect_line(res$stdout, task_line_re(
    1, "end", "Hello! a got 10 and b got 90 of 100 \\(total 100\\)\\. a took 10%\\."), res)
  # The join kept what merge_artifacts() merged, and not the excluded x.
  dir <- episode("01-branches-and-parameters")
  jid <- task_ids(dir, "BranchParameterFlow", "1", "join")
  expect_length(jid, 1)
  arts <- names(task_artifacts(dir, "BranchParameterFlow", "1", "join", jid))
  expect_true(all(c("budget", "note_from_a", "x_a", "x_b", "total") %in% arts),
              info = paste(arts, collapse = ", "))
  expect_false("x" %in% arts)
  got <- client_value(dir, paste(
    "r <- run_client$new('BranchParameterFlow', '1');",
    "saveRDS(list(alpha = r$artifact('alpha'), greeting = r$artifact('greeting'),",
    "             verbose = r$artifact('verbose'), total = r$artifact('total')), OUT)"))
  expect_identical(got, list(alpha = 0.1, greeting = "Hello", verbose = TRUE, total = 100))

  # The defaults: alpha 0.5, greeting Hi, verbose off.
  res2 <- run_episode("01-branches-and-parameters", c("branches.R", "run"))
  expect_exit(res2, 0)
  expect_line(res2$stdout, task_line_re(
    2, "end", "Hi! a got 50 and b got 50 of 100 \\(total 100\\)\\. a took 50%\\."), res2)
  expect_no_line(res2$stdout, "x of each branch", res2)

  # A value of the wrong type is refused before anything runs.
  bad <- run_episode("01-branches-and-parameters", c("branches.R", "run", "--alpha", "lots"))
  expect_one_line_error(bad, "invalid value 'lots' for --alpha", fixed = TRUE)
  expect_false(dir.exists(mf_path(dir, "BranchParameterFlow", "3")))
})

test_that("02-statistics fans out over the genres and joins a data frame", {
  dir <- episode("02-statistics")
  res <- run_episode("02-statistics", c("stats.R", "run"))
  expect_exit(res, 0)
  want <- expected_stats(file.path(dir, "movies.csv"))
  expect_line(res$stdout, task_line_re(1, "start", sprintf(
    "Read %d movies in %d genres: %s", sum(want$movies), nrow(want),
    paste(sort(want$genre), collapse = ", "))), res)
  expect_equal(length(task_ids(dir, "MovieStatsFlow", "1", "compute_stats")), nrow(want))
  expect_line(res$stdout, task_line_re(1, "compute_stats", "Drama: 6 movies, median gross 20\\.4 million"), res)
  expect_line(res$stdout, task_line_re(1, "end", sprintf(
    "The genre with the highest median gross is %s\\.", want$genre[1])), res)
  got <- client_value(dir, "saveRDS(run_client$new('MovieStatsFlow/1')$artifact('stats'), OUT)")
  expect_identical(names(got), c("genre", "movies", "median_gross", "mean_gross"))
  expect_equal(got, want, ignore_attr = TRUE)
})

test_that("03-client-notebook knits with knitr after 02 ran: summary, stats table, plot", {
  if (!requireNamespace("knitr", quietly = TRUE)) testthat::skip("knitr is not installed (make deps)")
  # Needs the run of 02 in ../02-statistics.
  stats02 <- mf_path(episode("02-statistics"), "MovieStatsFlow", "1", "_run.json")
  if (!file.exists(stats02)) return(testthat::fail("02-statistics has not run: its test failed"))
  dir <- episode("03-client-notebook")
  res <- run_episode("03-client-notebook", c("-e", "knitr::knit('stats.Rmd')"))
  expect_exit(res, 0)
  md <- read_lines_safe(file.path(dir, "stats.md"))
  expect_true(length(md) > 0, info = describe_result(res))
  expect_no_line(md, "^## Error")
  # list_flows() and the summaries.
  expect_line(md, "^## \\[1\\] \"MovieStatsFlow\"$")
  expect_line(md, "^## .*Flow Summary: MovieStatsFlow")
  expect_line(md, "^##\\s+Latest Successful Run:\\s+1$")
  expect_line(md, "^## .*Run Summary: 1")
  expect_line(md, "^##\\s+Successful:\\s+TRUE$")
  expect_stats_table(md, expected_stats(file.path(episode("02-statistics"), "movies.csv")))
  # One genre's task, and the bar plot.
  expect_line(md, "^## \\[1\\] \"[A-Za-z-]+\"$")
  png <- file.path(dir, "figure", "barplot-1.png")
  expect_true(file.exists(png) && file.size(png) > 1000, info = paste(md, collapse = "\n"))
  expect_line(md, "figure/barplot-1.png", fixed = TRUE)
})

# ---- 04 on AWS Batch (moto, the local R image), like test-batch.R -------------

py_system2 <- moto_py

tutorial_batch_env <- local({
  state <- NULL
  function() {
    if (is.null(state)) {
      state <<- moto_batch("tutorial-queue", "tutorial-bucket", flows = "MovieStatsFlow",
                           label = "AWS Batch tutorial")
      # What 04's README asks to configure, plus what moto needs.
      if (is.null(state$skip)) state$env <<- c(state$env, METAFLOW_DEFAULT_DATASTORE = "s3")
    }
    if (!is.null(state$skip)) testthat::skip(state$skip)
    state$env
  }
})

test_that("04-statistics-on-batch runs with --with batch, movies.csv in the code package", {
  env <- tutorial_batch_env()
  dir <- episode("04-statistics-on-batch")
  res <- run_episode("04-statistics-on-batch",
                     c("stats.R", "--package-suffixes=.R,.csv", "run", "--with", "batch", "--max-workers", "4"),
                     env = env, timeout = 420)
  expect_exit(res, 0)
  if (!identical(res$status, 0L)) return(invisible())
  want <- expected_stats(file.path(dir, "movies.csv"))
  tl <- parse_task_lines(res$stdout)
  # Every task was a Batch job (pid 0): start, one per genre (the children
  # of one array job), join, end.
  submitted <- tl[grepl(paste0("^Batch job [0-9a-f-]{36}(:[0-9]+ \\(a child of array job [0-9a-f-]{36}\\))? ",
                               "submitted to queue tutorial-queue \\(1 vCPU, 4000 MB memory"), tl$text), ]
  expect_equal(sum(grepl("a child of array job", submitted$text)), nrow(want), info = describe_result(res))
  expect_equal(nrow(submitted), nrow(want) + 3, info = describe_result(res))
  expect_setequal(unique(submitted$step), c("start", "compute_stats", "join", "end"))
  expect_true(all(tl$pid == 0), info = describe_result(res))
  # start read movies.csv in its container: the file came in the code package.
  expect_line(res$stdout, sprintf("\\[[0-9]+/start/[0-9]+ \\(pid 0\\)\\] Read %d movies in %d genres",
                                  sum(want$movies), nrow(want)), res)
  expect_line(res$stdout, "\\(pid 0\\)\\] Drama: 6 movies, median gross 20\\.4 million \\(computed on AWS Batch\\)$", res)
  # The S3 datastore: the run is read from another, empty folder. Its code
  # package is what the README says: stats.R and movies.csv, not README.md.
  got <- client_value(new_workdir("tutorial-s3-reader"), paste(
    "f <- flow_client$new('MovieStatsFlow'); r <- run_client$new(f, f$latest_successful_run);",
    "saveRDS(list(stats = r$artifact('stats'), code = r$code$files$path), OUT)"), env = env)
  expect_equal(got$stats, want, ignore_attr = TRUE)
  expect_identical(sort(got$code), c("movies.csv", "stats.R"))
  # As the README says, 03's notebook then reads this run from S3.
  if (requireNamespace("knitr", quietly = TRUE)) {
    nb <- run_episode("03-client-notebook", c("-e", "knitr::knit('stats.Rmd', 'stats-s3.md')"), env = env)
    expect_exit(nb, 0)
    md <- read_lines_safe(file.path(episode("03-client-notebook"), "stats-s3.md"))
    expect_line(md, "^## Current metadata provider: s3@s3://tutorial-bucket/metaflow$", nb)
    expect_line(md, "computed on AWS Batch", fixed = TRUE)
    expect_stats_table(md, want)
  }
})
