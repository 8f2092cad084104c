# Episode 04: episode 02's statistics, with the per-genre step on AWS Batch.
#
#   Rscript stats.R show
#   Rscript stats.R --package-suffixes=.R,.csv run --with batch --max-workers 4
#
# The code is episode 02's but for one line: compute_stats carries the batch
# decorator, so each genre is an AWS Batch job with 1 CPU and 4000 MB of
# memory, while the other steps run locally. `--with batch` on the command
# line sends the other steps to Batch as well. See README.md for the
# configuration Batch needs.

library(metaflow)

start <- function(self) {
  # With --with batch this step runs in a container too: movies.csv is
  # there because it is part of the code package (see README.md).
  self$movies <- read.csv("./movies.csv", stringsAsFactors = FALSE)
  self$genres <- sort(unique(self$movies$genre))
  cat(sprintf("Read %d movies in %d genres: %s\n", nrow(self$movies),
              length(self$genres), paste(self$genres, collapse = ", ")))
}

compute_stats <- function(self) {
  self$genre <- self$input
  gross <- self$movies$gross[self$movies$genre == self$genre]
  self$n_movies <- length(gross)
  self$median_gross <- median(gross)
  self$mean_gross <- mean(gross)
  # AWS Batch sets AWS_BATCH_JOB_ID in its jobs.
  where <- if (nzchar(Sys.getenv("AWS_BATCH_JOB_ID"))) "on AWS Batch" else "locally"
  cat(sprintf("%s: %d movies, median gross %.1f million (computed %s)\n",
              self$genre, self$n_movies, self$median_gross / 1e6, where))
}

join <- function(self, inputs) {
  stats <- data.frame(
    genre = unlist(gather_inputs(inputs, "genre")),
    movies = unlist(gather_inputs(inputs, "n_movies")),
    median_gross = unlist(gather_inputs(inputs, "median_gross")),
    mean_gross = unlist(gather_inputs(inputs, "mean_gross")),
    stringsAsFactors = FALSE
  )
  stats <- stats[order(stats$median_gross, decreasing = TRUE), ]
  rownames(stats) <- NULL
  self$stats <- stats
  print(self$stats)
}

end <- function(self) {
  cat("The genre with the highest median gross is ", self$stats$genre[1], ".\n",
      sep = "")
}

metaflow("MovieStatsFlow") %>%
  step(step = "start", r_function = start, next_step = "compute_stats",
       foreach = "genres") %>%
  step(batch(memory = 4000, cpu = 1),
       step = "compute_stats", r_function = compute_stats, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
