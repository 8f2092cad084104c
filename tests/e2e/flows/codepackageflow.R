# Reads files of the code package by relative path, as a step does locally:
# run with --package-suffixes=.R,.csv --with batch, the Batch job finds
# ./movies.csv and ./data/x.csv in its working directory.
library(metaflow)

start <- function(self) {
  self$movies <- read.csv("./movies.csv", stringsAsFactors = FALSE)
  self$x <- read.csv("./data/x.csv")$x
}

end <- function(self) {
  cat("titles:", paste(self$movies$title, collapse = "|"), "x:", sum(self$x), "\n")
}

metaflow("CodePackageFlowR") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
