# Episode 03-playlist-redux: follow the money.
#
#   Rscript playlist.R show
#   Rscript playlist.R run
#   Rscript playlist.R run --top_k 3
#
# Run episode 02 first (see README.md). start reads the latest successful
# run of MovieStatsFlow with the client API and keeps its `stats` as an
# artifact of this flow; pick_movie takes the genre with the highest median
# gross box office and shuffles its movies; end prints the playlist.

library(metaflow)

start <- function(self) {
  self$df <- read.csv("./movies.csv", stringsAsFactors = FALSE)

  # The client API works inside a step as it does in a notebook. It reads
  # the runs of the metadata provider: S3 (METAFLOW_DEFAULT_DATASTORE=s3),
  # or the nearest .metaflow folder, such as a shared ~/.metaflow. Without
  # one, episode 02 kept its runs in ../02-statistics/.metaflow: read them
  # there.
  if (!"MovieStatsFlow" %in% list_flows() && startsWith(get_metadata(), "local@") &&
      dir.exists(file.path("..", "02-statistics", ".metaflow", "MovieStatsFlow"))) {
    set_metadata(file.path("..", "02-statistics"))
  }
  message("Using metadata provider: ", get_metadata())
  if (!"MovieStatsFlow" %in% list_flows()) {
    stop("MovieStatsFlow has no run in ", get_metadata(),
         ": play episode 02-statistics first")
  }
  flow <- flow_client$new("MovieStatsFlow")
  run <- run_client$new(flow, flow$latest_successful_run)
  message("Using analysis from: ", run$pathspec)

  # An artifact of another flow's run, now an artifact of this one.
  self$stats_run <- run$pathspec
  self$genre_stats <- run$artifact("stats")
}

# The genre with the highest median gross box office, and its movies in a
# random order.
pick_movie <- function(self) {
  sorted_stats <- self$genre_stats[order(self$genre_stats$median, decreasing = TRUE), ]
  self$picked_genre <- sorted_stats$genres[1]
  message("Picked genre: ", self$picked_genre,
          " with the highest median gross box office.")

  movies <- self$df[self$df$genre == self$picked_genre, ]
  movies <- movies[sample(nrow(movies)), ]
  rownames(movies) <- NULL
  self$playlist <- movies
}

end <- function(self) {
  message("Playlist for movies in picked genre: ", self$picked_genre)
  for (i in seq_len(min(self$top_k, nrow(self$playlist)))) {
    message(sprintf("Pick %d: %s", i, self$playlist$movie_title[i]))
  }
}

metaflow("PlayListReduxFlow") %>%
  parameter("top_k", help = "The number of movies to recommend in the playlist.",
            default = 5, type = "int") %>%
  step(step = "start", r_function = start, next_step = "pick_movie") %>%
  step(step = "pick_movie", r_function = pick_movie, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
