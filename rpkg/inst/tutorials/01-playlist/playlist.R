# Episode 01-playlist: a movie playlist for your favourite genre.
#
#   Rscript playlist.R show
#   Rscript playlist.R run
#   Rscript playlist.R run --genre comedy
#   Rscript playlist.R run --genre comedy --top_k 3
#
# start reads movies.csv, then the flow splits into two branches that run at
# the same time:
#   pick_movie  - every movie of the genre asked for, in a random order;
#   bonus_movie - one random movie of any other genre.
# join gathers what the two branches made, and end prints the playlist.
# Every run is kept, so all the playlists you ever made can be read back
# later (see playlist.Rmd).

library(metaflow)

start <- function(self) {
  # Tasks run in the folder the flow was started from: run this flow in the
  # folder that holds movies.csv. The data frame becomes an artifact, which
  # every later step can read.
  self$df <- read.csv("./movies.csv", stringsAsFactors = FALSE)
  cat(sprintf("Read %d movies; the genres are %s\n", nrow(self$df),
              paste(sort(unique(self$df$genre)), collapse = ", ")))
}

# Branch 1: the movies of the genre the parameter names (case does not
# matter: --genre comedy finds the Comedy movies), shuffled.
pick_movie <- function(self) {
  in_genre <- tolower(self$df$genre) == tolower(self$genre)
  if (!any(in_genre)) {
    stop("no movie has the genre '", self$genre, "'; try one of: ",
         paste(sort(unique(self$df$genre)), collapse = ", "))
  }
  movies <- self$df[in_genre, ]
  movies <- movies[sample(nrow(movies)), ]
  rownames(movies) <- NULL
  self$movies <- movies
}

# Branch 2: one random movie of another genre.
bonus_movie <- function(self) {
  others <- self$df[tolower(self$df$genre) != tolower(self$genre), ]
  pick <- others[sample(nrow(others), 1), ]
  self$bonus <- pick$movie_title
  self$bonus_genre <- pick$genre
}

# A join step gets the artifacts of every branch in `inputs`, by step name.
join <- function(self, inputs) {
  self$playlist <- inputs$pick_movie$movies
  self$bonus <- inputs$bonus_movie$bonus
  # A join starts with the parameters only. merge_artifacts() carries over
  # the rest: df (the same in both branches) and bonus_genre (set in one
  # branch only). movies and bonus are left out: this step just set its own
  # playlist and bonus from them.
  merge_artifacts(self, inputs, exclude = c("movies", "bonus"))
}

end <- function(self) {
  cat(sprintf("Playlist for movies in genre '%s':\n", self$genre))
  for (i in seq_len(min(self$top_k, nrow(self$playlist)))) {
    cat(sprintf("Pick %d: %s (%d)\n", i, self$playlist$movie_title[i],
                self$playlist$title_year[i]))
  }
  cat(sprintf("Bonus pick: %s (%s)\n", self$bonus, self$bonus_genre))
}

metaflow("PlayListFlow") %>%
  parameter("genre", help = "Filter movies for a particular genre.",
            default = "Sci-Fi") %>%
  parameter("top_k", help = "The number of movies to recommend in the playlist.",
            default = 5, type = "int") %>%
  step(step = "start", r_function = start,
       next_step = c("pick_movie", "bonus_movie")) %>%
  step(step = "pick_movie", r_function = pick_movie, next_step = "join") %>%
  step(step = "bonus_movie", r_function = bonus_movie, next_step = "join") %>%
  step(step = "join", r_function = join, join = TRUE, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
