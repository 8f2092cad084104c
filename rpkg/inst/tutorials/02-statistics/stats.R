# Episode 02: statistics per movie genre, one task per genre (a foreach).
#
#   Rscript stats.R show
#   Rscript stats.R run
#
# start reads movies.csv (one row per movie: movie_title, title_year, genre,
# gross) and lists the genres. compute_stats runs once per genre, in
# parallel, and the join collects the results into one data frame, the
# artifact `stats`, which episode 03 reads with the client API.

library(metaflow)

start <- function(self) {
  # Tasks run in the folder the flow was started from: run this flow from
  # the folder that holds movies.csv.
  self$movies <- read.csv("./movies.csv", stringsAsFactors = FALSE)
  self$genres <- sort(unique(self$movies$genre))
  cat(sprintf("Read %d movies in %d genres: %s\n", nrow(self$movies),
              length(self$genres), paste(self$genres, collapse = ", ")))
}

# One task per element of self$genres; the element is self$input.
compute_stats <- function(self) {
  self$genre <- self$input
  gross <- self$movies$gross[self$movies$genre == self$genre]
  self$n_movies <- length(gross)
  self$median_gross <- median(gross)
  self$mean_gross <- mean(gross)
  cat(sprintf("%s: %d movies, median gross %.1f million\n",
              self$genre, self$n_movies, self$median_gross / 1e6))
}

# The join sees every compute_stats task in `inputs`.
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
  step(step = "compute_stats", r_function = compute_stats, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
