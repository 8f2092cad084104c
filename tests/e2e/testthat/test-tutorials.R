# The tutorials the package ships (rpkg/inst/tutorials), Metaflow R's
# episodes: copied with metaflow::pull_tutorials() into a fresh directory,
# then run with the commands their READMEs give, as a user would: 00, 01
# (parameters, and its notebook), 02 (and stats.Rmd), 03 (after 02), 07's
# refusal; then on AWS Batch under moto (skipped without docker or
# moto_server): 04 and its notebook, 05 (02's flow with --with batch) and
# 06's notebook reading both from S3.

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

# The statistics episode 02 computes (its artifact `stats`), computed here
# from its CSV: one row per genre, highest median gross first.
expected_stats <- function(csv) {
  movies <- read.csv(csv, stringsAsFactors = FALSE)
  genres <- sort(unique(movies$genre))
  s <- data.frame(
    genres = genres,
    movies = vapply(genres, function(g) sum(movies$genre == g), 0L),
    median = vapply(genres, function(g) median(movies$gross[movies$genre == g]), 0),
    mean = vapply(genres, function(g) mean(movies$gross[movies$genre == g]), 0),
    stringsAsFactors = FALSE, row.names = NULL)
  s <- s[order(s$median, decreasing = TRUE), ]
  rownames(s) <- NULL
  s
}

movies_of <- function(episode_name) {
  read.csv(file.path(episode(episode_name), "movies.csv"), stringsAsFactors = FALSE)
}

# The task lines a run printed (both streams), parsed.
task_lines <- function(res) parse_task_lines(c(res$stdout, res$stderr))

# The texts of the lines "Pick N: ..." of a run's end step, in order of N,
# checked to be numbered 1..n.
picks_of <- function(res) {
  tl <- task_lines(res)
  p <- tl$text[tl$step == "end" & grepl("^Pick [0-9]+: ", tl$text)]
  n <- as.integer(sub("^Pick ([0-9]+): .*$", "\\1", p))
  expect_identical(n, seq_along(p), info = describe_result(res))
  sub("^Pick [0-9]+: ", "", p)
}

# The stats table (knitr::kable) of 02's notebook: one row per genre, as
# computed from the CSV, in its order.
expect_stats_table <- function(md, want) {
  expect_line(md, "^\\|genres\\s*\\|\\s*movies\\|\\s*median\\|\\s*mean\\|$")
  rows <- grep("^\\|[A-Za-z]", md, value = TRUE)
  rows <- rows[!grepl("^\\|genres", rows)]
  expect_equal(trimws(sub("^\\|([^|]*)\\|.*$", "\\1", rows)), want$genres)
  for (i in seq_len(nrow(want))) {
    expect_line(md, sprintf("^\\|%s\\s*\\|\\s*%d\\|\\s*%s\\|\\s*%s\\|$", want$genres[i], want$movies[i],
                            format(want$median[i], big.mark = ",", scientific = FALSE),
                            format(round(want$mean[i]), big.mark = ",", scientific = FALSE)))
  }
}

# Knits an episode's notebook (as its README says) into out; returns the
# Markdown lines.
knit_notebook <- function(name, rmd, out, env = character()) {
  res <- run_episode(name, c("-e", sprintf("knitr::knit('%s', '%s')", rmd, out)), env = env)
  expect_exit(res, 0)
  md <- read_lines_safe(file.path(episode(name), out))
  expect_true(length(md) > 0, info = describe_result(res))
  expect_no_line(md, "^## Error")
  md
}

EPISODES <- c("00-helloworld", "01-playlist", "02-statistics", "03-playlist-redux",
              "04-helloaws", "05-statistics-redux", "06-worldview", "07-autopilot")

test_that("pull_tutorials() copies Metaflow R's episodes with their files", {
  d <- tutorials()
  expect_setequal(list.dirs(d, recursive = FALSE, full.names = FALSE), EPISODES)
  files <- list.files(d, recursive = TRUE)
  expect_setequal(files, c(
    "README.md",
    "00-helloworld/README.md", "00-helloworld/helloworld.R",
    "01-playlist/README.md", "01-playlist/playlist.R", "01-playlist/playlist.Rmd",
    "01-playlist/movies.csv",
    "02-statistics/README.md", "02-statistics/stats.R", "02-statistics/stats.Rmd",
    "02-statistics/movies.csv",
    "03-playlist-redux/README.md", "03-playlist-redux/playlist.R", "03-playlist-redux/movies.csv",
    "04-helloaws/README.md", "04-helloaws/helloaws.R", "04-helloaws/helloaws.Rmd",
    "05-statistics-redux/README.md",
    "06-worldview/README.md", "06-worldview/worldview.Rmd",
    "07-autopilot/README.md"))
  # The copies are the package's own files.
  src <- file.path(REPO_ROOT, "rpkg", "inst", "tutorials")
  for (f in list.files(src, recursive = TRUE)) {
    expect_identical(readLines(file.path(d, f), warn = FALSE),
                     readLines(file.path(src, f), warn = FALSE), info = f)
  }
  # The episodes read the same movies.
  csv <- movies_of("02-statistics")
  expect_identical(movies_of("01-playlist"), csv)
  expect_identical(movies_of("03-playlist-redux"), csv)
  expect_identical(names(csv), c("movie_title", "title_year", "genre", "gross"))
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

test_that("01-playlist: parameters genre and top_k, two branches joined, the notebook", {
  movies <- movies_of("01-playlist")
  dir <- episode("01-playlist")
  show <- run_episode("01-playlist", c("playlist.R", "show"))
  expect_exit(show, 0)
  expect_line(show$stdout, "^Flow PlayListFlow$", show)
  expect_line(show$stdout, "^\\s+--genre .*default Sci-Fi.*Filter movies for a particular genre\\.", show)
  expect_line(show$stdout, "^\\s+--top-k \\(integer, default 5\\).*number of movies to recommend", show)
  expect_equal(grep("^Step ", show$stdout, value = TRUE),
               c("Step start", "Step pick_movie", "Step bonus_movie", "Step join  (join)", "Step end"))
  expect_line(show$stdout, "^\\s+=> pick_movie, bonus_movie$", show)

  check_playlist <- function(res, run_id, genre, n_picks) {
    expect_exit(res, 0)
    want <- movies[tolower(movies$genre) == tolower(genre), ]
    expect_line(res$stdout, task_line_re(run_id, "end", sprintf(
      "Playlist for movies in genre '%s':", genre)), res)
    picks <- picks_of(res)
    titles <- sprintf("%s (%d)", want$movie_title, want$title_year)
    expect_length(picks, min(n_picks, nrow(want)))
    expect_true(all(picks %in% titles), info = paste(picks, collapse = "; "))
    expect_false(anyDuplicated(picks) > 0)
    bonus <- grep("^Bonus pick: ", task_lines(res)$text, value = TRUE)
    expect_length(bonus, 1)
    others <- movies[tolower(movies$genre) != tolower(genre), ]
    expect_true(sub("^Bonus pick: ", "", bonus) %in% sprintf("%s (%s)", others$movie_title, others$genre),
                info = bonus)
    # The playlist artifact is every movie of the genre, shuffled.
    got <- client_value(dir, sprintf(
      "r <- run_client$new('PlayListFlow', '%s'); saveRDS(list(p = r$artifact('playlist'), g = r$artifact('genre'), k = r$artifact('top_k')), OUT)",
      run_id))
    expect_identical(got$g, genre)
    # (A default of 5 stays a double, a value given on the command line is an integer.)
    expect_equal(got$k, n_picks)
    expect_setequal(got$p$movie_title, want$movie_title)
    expect_identical(nrow(got$p), nrow(want))
    expect_identical(sprintf("%s (%d)", got$p$movie_title, got$p$title_year)[seq_along(picks)], picks)
  }

  # The commands of the README: the defaults, then --genre comedy.
  check_playlist(run_episode("01-playlist", c("playlist.R", "run")), 1, "Sci-Fi", 5)
  check_playlist(run_episode("01-playlist", c("playlist.R", "run", "--genre", "comedy")), 2, "comedy", 5)
  check_playlist(run_episode("01-playlist", c("playlist.R", "run", "--genre", "comedy", "--top_k", "3")),
                 3, "comedy", 3)
  # merge_artifacts() in the join carried df and bonus_genre, not movies.
  jid <- task_ids(dir, "PlayListFlow", "3", "join")
  expect_length(jid, 1)
  arts <- names(task_artifacts(dir, "PlayListFlow", "3", "join", jid))
  expect_true(all(c("df", "bonus_genre", "playlist", "bonus", "genre", "top_k") %in% arts),
              info = paste(arts, collapse = ", "))
  expect_false("movies" %in% arts)

  bad <- run_episode("01-playlist", c("playlist.R", "run", "--top_k", "lots"))
  expect_one_line_error(bad, "invalid value 'lots' for --top-k", fixed = TRUE)
  expect_false(dir.exists(mf_path(dir, "PlayListFlow", "4")))
  nogenre <- run_episode("01-playlist", c("playlist.R", "run", "--genre", "western"))
  expect_failure_exit(nogenre)
  expect_output_match(nogenre, "no movie has the genre 'western'; try one of: Action, Animation, Comedy, Drama, Horror, Sci-Fi",
                      fixed = TRUE)

  # The notebook: the latest playlist (run 3: comedy, 3 picks), then every run.
  if (!requireNamespace("knitr", quietly = TRUE)) testthat::skip("knitr is not installed (make deps)")
  md <- knit_notebook("01-playlist", "playlist.Rmd", "playlist.md")
  expect_line(md, "^## Using run: 3$")
  expect_line(md, "^## Playlist for movies in genre: comedy$")
  # head() of the playlist: top_k (3) comedies.
  comedies <- movies$movie_title[movies$genre == "Comedy"]
  rows <- grep("^## [0-9]+ ", md, value = TRUE)
  expect_length(rows, 3)
  expect_true(all(grepl("\\s[0-9]{4}\\s+Comedy$", rows)), info = paste(rows, collapse = "\n"))
  expect_true(all(vapply(rows, function(r) sum(vapply(comedies, grepl, NA, x = r, fixed = TRUE)) == 1, NA)),
              info = paste(rows, collapse = "\n"))
  for (r in 1:3) {
    line <- expect_line(md, sprintf("^## Run %d \\(genre %s, top %d\\): ", r,
                                    c("Sci-Fi", "comedy", "comedy")[r], c(5, 5, 3)[r]))
    picks <- strsplit(sub("^## Run [0-9]+ \\([^)]*\\): ", "", line[1]), "; ", fixed = TRUE)[[1]]
    g <- c("Sci-Fi", "Comedy", "Comedy")[r]
    expect_length(picks, c(5, 5, 3)[r])
    expect_true(all(picks %in% movies$movie_title[movies$genre == g]), info = line[1])
  }
})

test_that("02-statistics fans out over the genres, joins a data frame; stats.Rmd reads it", {
  dir <- episode("02-statistics")
  want <- expected_stats(file.path(dir, "movies.csv"))
  show <- run_episode("02-statistics", c("stats.R", "show"))
  expect_exit(show, 0)
  expect_equal(grep("^Step ", show$stdout, value = TRUE),
               c("Step start", "Step compute_stats", "Step join  (join)", "Step end"))
  res <- run_episode("02-statistics", c("stats.R", "run"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", sprintf(
    "Read %d movies in %d genres: %s", sum(want$movies), nrow(want),
    paste(sort(want$genres), collapse = ", "))), res)
  expect_equal(length(task_ids(dir, "MovieStatsFlow", "1", "compute_stats")), nrow(want))
  for (i in seq_len(nrow(want))) {
    expect_line(res$stdout, task_line_re(1, "compute_stats", sprintf(
      "%s: %d movies, median gross %.1f million \\(computed locally\\)",
      want$genres[i], want$movies[i], want$median[i] / 1e6)), res)
  }
  expect_line(res$stdout, task_line_re(1, "end", sprintf(
    "The genre with the highest median gross is %s\\.", want$genres[1])), res)
  got <- client_value(dir, "saveRDS(run_client$new('MovieStatsFlow/1')$artifact('stats'), OUT)")
  expect_identical(names(got), c("genres", "movies", "median", "mean"))
  expect_equal(got, want, ignore_attr = TRUE)

  if (!requireNamespace("knitr", quietly = TRUE)) testthat::skip("knitr is not installed (make deps)")
  md <- knit_notebook("02-statistics", "stats.Rmd", "stats.md")
  expect_line(md, sprintf("^## Current metadata provider: local@%s$", mf_path(normalizePath(dir))))
  expect_line(md, "^## \\[1\\] \"MovieStatsFlow\"$")
  expect_line(md, "^## .*Flow Summary: MovieStatsFlow")
  expect_line(md, "^##\\s+Latest Successful Run:\\s+1$")
  expect_line(md, "^## .*Run Summary: 1")
  expect_line(md, "^##\\s+Successful:\\s+TRUE$")
  expect_stats_table(md, want)
  # One genre's task: its genre, median and output.
  g <- expect_line(md, "^## \\[1\\] \"[A-Za-z-]+\"$")
  g <- sub("^## \\[1\\] \"(.*)\"$", "\\1", g[length(g)])
  expect_true(g %in% want$genres)
  expect_line(md, sprintf("^## \\[1\\] %s$", format(want$median[want$genres == g], scientific = FALSE)))
  expect_line(md, sprintf("^## %s: [0-9]+ movies, median gross .* \\(computed locally\\)$", g))
  png <- file.path(dir, "figure", "barplot-1.png")
  expect_true(file.exists(png) && file.size(png) > 1000, info = paste(md, collapse = "\n"))
  expect_line(md, "figure/barplot-1.png", fixed = TRUE)
})

test_that("03-playlist-redux uses 02's statistics: the genre with the highest median", {
  stats02 <- mf_path(episode("02-statistics"), "MovieStatsFlow", "1", "_run.json")
  if (!file.exists(stats02)) return(testthat::fail("02-statistics has not run: its test failed"))
  dir <- episode("03-playlist-redux")
  want <- expected_stats(file.path(dir, "movies.csv"))
  movies <- movies_of("03-playlist-redux")
  show <- run_episode("03-playlist-redux", c("playlist.R", "show"))
  expect_exit(show, 0)
  expect_equal(grep("^Step ", show$stdout, value = TRUE), c("Step start", "Step pick_movie", "Step end"))
  expect_line(show$stdout, "^\\s+--top-k \\(integer, default 5\\)", show)

  res <- run_episode("03-playlist-redux", c("playlist.R", "run"))
  expect_exit(res, 0)
  tl <- task_lines(res)
  expect_true(sprintf("Using metadata provider: local@%s", mf_path(normalizePath(episode("02-statistics")))) %in%
                tl$text[tl$step == "start"], info = describe_result(res))
  expect_true("Using analysis from: MovieStatsFlow/1" %in% tl$text[tl$step == "start"], info = describe_result(res))
  top <- want$genres[1]
  expect_true(sprintf("Picked genre: %s with the highest median gross box office.", top) %in%
                tl$text[tl$step == "pick_movie"], info = describe_result(res))
  expect_true(sprintf("Playlist for movies in picked genre: %s", top) %in% tl$text[tl$step == "end"])
  picks <- picks_of(res)
  in_top <- movies$movie_title[movies$genre == top]
  expect_length(picks, min(5, length(in_top)))
  expect_true(all(picks %in% in_top) && !anyDuplicated(picks), info = paste(picks, collapse = "; "))
  # Its own run is recorded here; 02's statistics became its artifact.
  got <- client_value(dir, paste(
    "r <- run_client$new('PlayListReduxFlow', '1');",
    "saveRDS(list(s = r$artifact('genre_stats'), from = r$artifact('stats_run'), g = r$artifact('picked_genre')), OUT)"))
  expect_equal(got$s, want, ignore_attr = TRUE)
  expect_identical(got$from, "MovieStatsFlow/1")
  expect_identical(got$g, top)
  res3 <- run_episode("03-playlist-redux", c("playlist.R", "run", "--top_k", "3"))
  expect_exit(res3, 0)
  expect_length(picks_of(res3), 3)
})

test_that("07-autopilot: step-functions is refused at once, as its README says", {
  res <- run_episode("02-statistics", c("stats.R", "--package-suffixes=.R,.csv", "step-functions",
                                        "create", "--max-workers", "4"))
  expect_one_line_error(res, "'step-functions' is not supported: flows run locally or on AWS Batch (--with batch)",
                        fixed = TRUE)
  readme <- readLines(file.path(episode("07-autopilot"), "README.md"))
  expect_line(readme, "Error: 'step-functions' is not supported: flows run locally or on AWS Batch (--with batch)",
              fixed = TRUE)
  expect_false(dir.exists(mf_path(episode("02-statistics"), "MovieStatsFlow", "2")))
})

# ---- 04, 05 and 06 on AWS Batch and S3 (moto, the local R image) -------------

tutorial_batch_env <- local({
  state <- NULL
  function() {
    if (is.null(state)) {
      state <<- moto_batch("tutorial-queue", "tutorial-bucket", flows = c("HelloAWSFlow", "MovieStatsFlow"),
                           label = "AWS Batch tutorials")
      # What 04's README asks to configure, plus what moto needs.
      if (is.null(state$skip)) state$env <<- c(state$env, METAFLOW_DEFAULT_DATASTORE = "s3")
    }
    if (!is.null(state$skip)) testthat::skip(state$skip)
    state$env
  }
})

S3_PROVIDER <- "s3@s3://tutorial-bucket/metaflow"

run_id_of <- function(res) {
  l <- grep("Workflow starting \\(run-id [0-9]+\\)", res$stdout, value = TRUE)
  if (!length(l)) return(NA_character_)
  sub("^.*\\(run-id ([0-9]+)\\).*$", "\\1", l[1])
}

batch_submissions <- function(tl, vcpu, mb) {
  tl[grepl(sprintf(paste0("^Batch job [0-9a-f-]{36}(:[0-9]+ \\(a child of array job [0-9a-f-]{36}\\))? ",
                          "submitted to queue tutorial-queue \\(%d vCPU, %d MB memory"), vcpu, mb), tl$text), ]
}

test_that("04-helloaws: hello runs on AWS Batch (retry, batch), start and end locally; helloaws.Rmd", {
  env <- tutorial_batch_env()
  res <- run_episode("04-helloaws", c("helloaws.R", "run"), env = env, timeout = 420)
  expect_exit(res, 0)
  if (!identical(res$status, 0L)) return(invisible())
  id <- run_id_of(res)
  tl <- task_lines(res)
  sub <- batch_submissions(tl, 2, 2048)
  expect_equal(nrow(sub), 1, info = describe_result(res))
  expect_identical(unique(sub$step), "hello")
  expect_true(all(tl$pid[tl$step == "hello"] == 0), info = describe_result(res))
  expect_true(all(tl$pid[tl$step %in% c("start", "end")] > 0), info = describe_result(res))
  expect_true(all(tl$run == id))
  hello <- tl$text[tl$step == "hello"]
  expect_true("[1] \"We're on the cloud! Metaflow says: Hi!\"" %in% hello, info = describe_result(res))
  expect_true(any(grepl("^Running in AWS Batch job [0-9a-f-]{36}", hello)), info = describe_result(res))
  expect_true(paste("Using metadata provider:", S3_PROVIDER) %in% tl$text[tl$step == "start"])
  expect_true("HelloAWS is all done." %in% tl$text[tl$step == "end"])
  # The notebook reads the run from S3.
  if (!requireNamespace("knitr", quietly = TRUE)) testthat::skip("knitr is not installed (make deps)")
  md <- knit_notebook("04-helloaws", "helloaws.Rmd", "helloaws.md", env = env)
  expect_line(md, sprintf("^## Current metadata provider: %s$", S3_PROVIDER))
  expect_line(md, sprintf("^## Using run: HelloAWSFlow/%s$", id))
  expect_line(md, "^## We're on the cloud! Metaflow says: Hi!$")
  # What hello printed, on stdout and stderr.
  expect_line(md, "^## \\[1\\] \"We're on the cloud! Metaflow says: Hi!\"$")
  expect_line(md, "^## Running in AWS Batch job [0-9a-f-]{36}")
})

test_that("05-statistics-redux: 02's stats.R with --with batch, movies.csv in the code package", {
  env <- tutorial_batch_env()
  dir <- episode("02-statistics")
  res <- run_episode("02-statistics",
                     c("stats.R", "--package-suffixes=.R,.csv", "run", "--with", "batch", "--max-workers", "4"),
                     env = env, timeout = 420)
  expect_exit(res, 0)
  if (!identical(res$status, 0L)) return(invisible())
  want <- expected_stats(file.path(dir, "movies.csv"))
  tl <- task_lines(res)
  # Every task was a Batch job (pid 0): start, one per genre (the children
  # of one array job), join, end.
  submitted <- batch_submissions(tl, 1, 4000)
  expect_equal(sum(grepl("a child of array job", submitted$text)), nrow(want), info = describe_result(res))
  expect_equal(nrow(submitted), nrow(want) + 3, info = describe_result(res))
  expect_setequal(unique(submitted$step), c("start", "compute_stats", "join", "end"))
  expect_true(all(tl$pid == 0), info = describe_result(res))
  # start read movies.csv in its container: the file came in the code package.
  expect_true(any(grepl(sprintf("^Read %d movies in %d genres", sum(want$movies), nrow(want)),
                        tl$text[tl$step == "start"])), info = describe_result(res))
  for (i in seq_len(nrow(want))) {
    expect_true(sprintf("%s: %d movies, median gross %.1f million (computed on AWS Batch)",
                        want$genres[i], want$movies[i], want$median[i] / 1e6) %in% tl$text,
                info = describe_result(res))
  }
  # The S3 datastore: the run is read from another, empty folder. Its code
  # package is what the README says: stats.R and movies.csv.
  got <- client_value(new_workdir("tutorial-s3-reader"), paste(
    "f <- flow_client$new('MovieStatsFlow'); r <- run_client$new(f, f$latest_successful_run);",
    "saveRDS(list(id = r$id, stats = r$artifact('stats'), code = r$code$files$path), OUT)"), env = env)
  expect_identical(got$id, run_id_of(res))
  expect_equal(got$stats, want, ignore_attr = TRUE)
  expect_identical(sort(got$code), c("movies.csv", "stats.R"))
  # As the README says, 02's notebook then reads this run from S3.
  if (!requireNamespace("knitr", quietly = TRUE)) testthat::skip("knitr is not installed (make deps)")
  md <- knit_notebook("02-statistics", "stats.Rmd", "stats-s3.md", env = env)
  expect_line(md, sprintf("^## Current metadata provider: %s$", S3_PROVIDER))
  expect_line(md, sprintf("^##\\s+Latest Successful Run:\\s+%s$", got$id))
  expect_line(md, "^## [A-Za-z-]+: [0-9]+ movies, median gross .* \\(computed on AWS Batch\\)$")
  expect_stats_table(md, want)
})

test_that("06-worldview lists every flow of the S3 datastore and HelloAWSFlow's runs", {
  env <- tutorial_batch_env()
  if (!requireNamespace("knitr", quietly = TRUE)) testthat::skip("knitr is not installed (make deps)")
  # What 04 and 05 left in S3.
  runs <- client_value(new_workdir("tutorial-worldview"), paste(
    "set_namespace(NULL); fl <- sort(list_flows());",
    "saveRDS(lapply(setNames(fl, fl), function(f) flow_client$new(f)$runs), OUT)"), env = env)
  expect_identical(names(runs), c("HelloAWSFlow", "MovieStatsFlow"))
  md <- knit_notebook("06-worldview", "worldview.Rmd", "worldview.md", env = env)
  expect_line(md, sprintf("^## Current metadata provider: %s$", S3_PROVIDER))
  for (f in names(runs)) {
    expect_line(md, sprintf("^## %s: run %s by [^ ]+, finished at [0-9T:.-]+Z, successful: TRUE \\(%d run\\(s\\)\\)$",
                            f, runs[[f]][1], length(runs[[f]])))
  }
  for (id in runs$HelloAWSFlow) expect_line(md, sprintf("^## Run id: %s Successful: TRUE$", id))
  expect_line(md, "^## Tags: .*user:[^ ,]+")
  expect_no_line(md, "^## HelloAWSFlow has no run here")
})
