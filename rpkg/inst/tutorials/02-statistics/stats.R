# Episode 02-statistics: statistics per movie genre, one task per genre.
#
#   Rscript stats.R show
#   Rscript stats.R run
#   Rscript stats.R --package-suffixes=.R,.csv run --with batch --max-workers 4   # episode 05
#
# start reads movies.csv and lists its genres. compute_stats runs once per
# genre (a foreach), in parallel; join collects the results into one data
# frame, the artifact `stats`, which stats.Rmd and episode 03 read back.

library(metaflow)

start <- function(self) {
  # Tasks run in the folder the flow was started from: run this flow in the
  # folder that holds movies.csv. (On AWS Batch, episode 05, the file
  # travels in the code package.)
  self$df <- read.csv("./movies.csv", stringsAsFactors = FALSE)
  # The foreach below runs compute_stats once per element of this vector.
  self$genres <- sort(unique(self$df$genre))
  cat(sprintf("Read %d movies in %d genres: %s\n", nrow(self$df),
              length(self$genres), paste(self$genres, collapse = ", ")))
}

# One task per genre; the task's genre is self$input.
compute_stats <- function(self) {
  self$genre <- self$input
  self$df_by_genre <- self$df[self$df$genre == self$genre, ]
  gross <- self$df_by_genre$gross
  self$n_movies <- length(gross)
  self$median <- median(gross)
  self$mean <- mean(gross)
  # AWS Batch sets AWS_BATCH_JOB_ID in its jobs (episode 05).
  where <- if (nzchar(Sys.getenv("AWS_BATCH_JOB_ID"))) "on AWS Batch" else "locally"
  cat(sprintf("%s: %d movies, median gross %.1f million (computed %s)\n",
              self$genre, self$n_movies, self$median / 1e6, where))
}

# The join sees every compute_stats task in `inputs`; gather_inputs() takes
# one artifact of each, in order.
join <- function(self, inputs) {
  stats <- data.frame(
    genres = unlist(gather_inputs(inputs, "genre")),
    movies = unlist(gather_inputs(inputs, "n_movies")),
    median = unlist(gather_inputs(inputs, "median")),
    mean = unlist(gather_inputs(inputs, "mean")),
    stringsAsFactors = FALSE
  )
  stats <- stats[order(stats$median, decreasing = TRUE), ]
  rownames(stats) <- NULL
  self$stats <- stats
  print(self$stats)
}

end <- function(self) {
  cat("The genre with the highest median gross is ", self$stats$genres[1], ".\n",
      sep = "")
}

metaflow("MovieStatsFlow") %>%
  step(step = "start", r_function = start, next_step = "compute_stats",
       foreach = "genres") %>%
  step(step = "compute_stats", r_function = compute_stats, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
